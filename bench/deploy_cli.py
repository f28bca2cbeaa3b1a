"""Deploying the CLI: ``python -m vision predict`` on one photo, the model's conversion cached.

    python bench/deploy_cli.py [--repeats 5] [--model PATH] [--photo PATH] [--cache DIR]

Every run is a fresh process, as a user's command is: its wall time on this process's clock
(start to exit) and its peak memory, the child's own ``ru_maxrss`` (``os.wait4``). Three sides
take turns in rounds whose order rotates (``timing.alternating_ms``):

- ``predict``: the command as it ships (LiteRT; TensorFlow never imported);
- ``predict on tf.lite``: the same command with ``VISION_TFLITE_ENGINE=tensorflow``, the landed
  path (TensorFlow imported to run ``tf.lite.Interpreter`` on the same cached flatbuffer);
- ``import tensorflow``: ``python -c "import tensorflow"``, the floor of any path importing it.

Before timing, one run converts the model into the cache (a fresh temporary folder unless
``--cache`` names one), and two checks run: the ``predict`` process imports neither
``tensorflow`` nor ``keras``, and its ``--json`` output (full float precision) equals the
tf.lite path's; every timed ``predict`` then prints what the tf.lite run of its round printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from timing import alternating_ms, machine  # noqa: E402

from vision.runtime.tflite import ENGINE_VARIABLE  # noqa: E402

#: What a user's ``predict`` on one photo may cost once the model is converted.
TARGET_SECONDS = 1.0
TARGET_PEAK_MB = 300.0
#: Prints the heavy modules a ``predict`` run imported, after the command itself has run.
_IMPORT_CHECK = (
    "import runpy, sys\n"
    "sys.argv, code = ['vision', *sys.argv[1:]], 0\n"
    "try:\n    runpy.run_module('vision', run_name='__main__')\n"
    "except SystemExit as stop:\n    code = stop.code\n"
    "print('imported:', *sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))\n"
    "sys.exit(code)"
)


@dataclass(frozen=True)
class Run:
    """One finished child process."""

    seconds: float
    peak_mb: float
    stdout: str
    stderr: str
    returncode: int


def run_fresh(argv: list[str], env: dict[str, str]) -> Run:
    """Run ``argv`` in a new process from the repository root and wait for it.

    The peak is that child's own ``ru_maxrss`` (``os.wait4`` reports it per child, where
    ``getrusage(RUSAGE_CHILDREN)`` keeps the largest of all children so far)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        # Linux reports ru_maxrss in KiB, macOS in bytes.
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        return Run(seconds, peak / 1e6, out.read().decode(), err.read().decode(), child.returncode)


def _checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        raise RuntimeError(f"{what} exited with {run.returncode}:\n{run.stderr[-2000:]}")
    return run


def measure(repeats: int = 5, model: str | None = None, photo: str | None = None,
            cache: str | None = None) -> list[dict[str, Any]]:
    """Time and check ``python -m vision predict PHOTO`` with its conversion cached.

    Args:
        repeats: Rounds; each runs every side once, in a rotating order.
        model: ``--model`` for the CLI; its default (the everyday-objects model) if None.
        photo: The image; the package's ``grace_hopper.jpg`` if None.
        cache: ``VISION_CACHE_DIR`` for the runs; a fresh temporary folder if None (the first
            run then converts the model).

    Returns:
        Rows with ``name``, ``value`` (a number, or text for checks), ``unit``, ``target``
        (text; "" when the row only informs) and ``pass`` (None when there is no target).
    """
    from vision.data.photos import example_photos

    photo = photo or str(next(p for p in example_photos() if p.name == "grace_hopper.jpg"))
    with tempfile.TemporaryDirectory(prefix="deploy-cli-cache-") as fresh:
        env = {name: value for name, value in os.environ.items() if name != ENGINE_VARIABLE}
        env["VISION_CACHE_DIR"] = cache or fresh
        tf_lite_env = {**env, ENGINE_VARIABLE: "tensorflow"}
        command = ["predict", photo, *(["--model", model] if model else [])]
        predict = [sys.executable, "-m", "vision", *command]

        first = _checked(run_fresh(predict, env), "the first predict")  # converts, unless --cache has it
        imports = _checked(run_fresh([sys.executable, "-c", _IMPORT_CHECK, *command], env), "the import check")
        imported = imports.stdout.strip().splitlines()[-1].removeprefix("imported:").split()
        as_json = _checked(run_fresh([*predict, "--json"], env), "predict --json").stdout
        tf_lite_json = _checked(run_fresh([*predict, "--json"], tf_lite_env), "predict --json on tf.lite").stdout

        runs: dict[str, list[Run]] = {"predict": [], "predict on tf.lite": [], "import tensorflow": []}
        argv = {"predict": (predict, env), "predict on tf.lite": (predict, tf_lite_env),
                "import tensorflow": ([sys.executable, "-c", "import tensorflow"], env)}

        def side(name: str) -> Callable[[], None]:
            def call() -> None:
                runs[name].append(_checked(run_fresh(*argv[name]), name))
            return call

        wall_ms = alternating_ms({name: side(name) for name in runs}, repeats=repeats, blocks=repeats, warmup=0)

    peak = {name: statistics.median(run.peak_mb for run in done) for name, done in runs.items()}
    wall = {name: ms / 1000 for name, ms in wall_ms.items()}
    same = sum(new.stdout == old.stdout for new, old in zip(runs["predict"], runs["predict on tf.lite"]))
    rows = [
        _row("predict, wall (median)", wall["predict"], "s", f"<= {TARGET_SECONDS:g} s",
             wall["predict"] <= TARGET_SECONDS),
        _row("predict, peak memory (median)", peak["predict"], "MB", f"<= {TARGET_PEAK_MB:g} MB",
             peak["predict"] <= TARGET_PEAK_MB),
        _row("predict imports tensorflow/keras", " ".join(imported) or "neither", "", "neither", not imported),
        _row("--json output equals the tf.lite path's", "yes" if as_json == tf_lite_json else "NO", "", "yes",
             as_json == tf_lite_json),
        _row("timed outputs equal the tf.lite round's", f"{same}/{repeats}", "", f"{repeats}/{repeats}",
             same == repeats),
        _row("predict on tf.lite (imports TF, as landed), wall", wall["predict on tf.lite"], "s"),
        _row("predict on tf.lite (imports TF, as landed), peak", peak["predict on tf.lite"], "MB"),
        _row("python -c 'import tensorflow', wall", wall["import tensorflow"], "s"),
        _row("python -c 'import tensorflow', peak", peak["import tensorflow"], "MB"),
        _row("tf.lite path / predict, wall", wall["predict on tf.lite"] / wall["predict"], "x"),
        _row("import tensorflow / predict, wall", wall["import tensorflow"] / wall["predict"], "x"),
        _row("first predict (converts unless --cache had it)", first.seconds, "s"),
    ]
    return rows


def _row(name: str, value: float | str, unit: str, target: str = "", passed: bool | None = None) -> dict[str, Any]:
    return {"name": name, "value": value, "unit": unit, "target": target, "pass": passed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds (every side once per round)")
    parser.add_argument("--model", help="bundle for --model (default: the CLI's default model)")
    parser.add_argument("--photo", help="image to classify (default: grace_hopper.jpg)")
    parser.add_argument("--cache", help="VISION_CACHE_DIR to use (default: a fresh temporary folder)")
    args = parser.parse_args()
    print(f"python -m vision predict, one photo, conversion cached; {machine()}")
    rows = measure(args.repeats, args.model, args.photo, args.cache)
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        value = row["value"]
        shown = f"{value:.3g} {row['unit']}".strip() if isinstance(value, float) else str(value)
        verdict = "" if row["pass"] is None else ("pass" if row["pass"] else "FAIL")
        target = f"target {row['target']}" if row["target"] else ""
        print(f"  {row['name']:<{width}}  {shown:>12}  {target:<18} {verdict}")
    print(f"  ({args.repeats} rounds, the sides' order rotating each round; medians; {machine()})")


if __name__ == "__main__":
    main()
