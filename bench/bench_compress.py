"""Smaller models on purpose: distillation, pruning and int8, each figure beside its target.

    python bench/bench_compress.py [--only textures shapes]

Everything goes through ``vision.optimize.compress.compress``, as the CLI's ``optimize`` and the
app's Optimize view do; every variant is measured as its TFLite flatbuffer on LiteRT.

- textures (``vision.data.photos``, 10 photos per class, 120 held-out test patches): the few-shot
  EfficientNet-Lite0 head (the fast path, 224 px) is the teacher. It is distilled into
  ``simple_cnn`` at 96 px, which is pruned to 75 % and quantized to int8; the same student is
  also trained on the labels alone (as the Train view would). Lite0 itself is pruned to 75 % too.
  Targets: the student <= 1/10 of the teacher's parameters with >= 0.95 test accuracy (the one
  from labels alone: reported); its latency <= 0.25x the teacher's; pruning costs <= 1 point of
  test accuracy and gzips to <= 0.4x.
- shapes (the shipped ``models/shapes``, resnet_small at 64 px, on its own 800 training images;
  400 freshly drawn shapes held out): pruned to 75 %, the same targets for pruning.

Latency ratios come from ``timing.alternating_ms`` (the models take turns in blocks, batch 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
from timing import alternating_ms, machine  # noqa: E402

TASKS = ("textures", "shapes")
SPARSITY = 0.75
#: The student: ``simple_cnn`` is 0.24 M parameters against Lite0's 3.4 M.
STUDENT = dict(student="simple_cnn", input_size=96, views=24, epochs=40)


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: ""}[passed]


def _print_table(title: str, rows: list) -> None:
    from vision.optimize.compress import COLUMNS

    print(f"\n{title}")
    print("| " + " | ".join(COLUMNS) + " | parameters | .keras gzip (MB) | sparsity |")
    print("|" + "---|" * (len(COLUMNS) + 3))
    for row in rows:
        details = row.details
        cells = [*row.row(), details.get("parameters", "-"),
                 round(details["keras_gzip_bytes"] / 1e6, 3) if "keras_gzip_bytes" in details else "-",
                 details.get("sparsity", "-")]
        print("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")


def _latency_ratio(rows: list, names: tuple[str, str], repeats: int = 60) -> tuple[float, float, float]:
    """(ms of names[0], ms of names[1], ratio), the two flatbuffers taking turns."""
    from vision.bundle.store import load_bundle
    from vision.data.images import preprocess
    from vision.optimize.compress import model_flatbuffer
    from vision.runtime.tflite import TFLiteRunner

    sides = {}
    for name in names:
        row = next(r for r in rows if r.name == name)
        bundle = load_bundle(row.path)
        runner = TFLiteRunner(model_flatbuffer(bundle))
        x = np.asarray(preprocess(np.full((128, 128, 3), 127, np.uint8), bundle.preprocessing), np.float32)
        sides[name] = (lambda r=runner, v=x: r(v))
    times = alternating_ms(sides, repeats)
    return times[names[0]], times[names[1]], times[names[1]] / times[names[0]]


def _targets(label: str, rows: list, pruned_name: str, base_name: str) -> None:
    base = next(r for r in rows if r.name == base_name)
    pruned = next(r for r in rows if r.name == pruned_name)
    drop = (base.accuracy - pruned.accuracy) * 100
    gzip_ratio = pruned.gzip_bytes / base.gzip_bytes
    keras_ratio = pruned.details["keras_gzip_bytes"] / base.details["keras_gzip_bytes"]
    print(f"  {label}: pruned to {pruned.details['sparsity']:.3f} sparsity: test accuracy {base.accuracy:.3f} -> "
          f"{pruned.accuracy:.3f} (drop {drop:.1f} points, target <= 1) {_verdict(drop <= 1.0)}")
    print(f"  {label}: gzip size pruned / dense: .tflite {gzip_ratio:.2f}, .keras {keras_ratio:.2f} "
          f"(target <= 0.4) {_verdict(max(gzip_ratio, keras_ratio) <= 0.4)}")
    before, after, ratio = _latency_ratio(rows, (base_name, pruned_name))
    print(f"  {label}: TFLite latency pruned {after:.2f} ms vs dense {before:.2f} ms ({ratio:.2f}x, reported)")


def textures(tmp: Path, prune_lite0: bool = True) -> None:
    from vision.bundle.store import load_bundle
    from vision.data.datasets import load_folder
    from vision.data.photos import write_texture_task
    from vision.optimize.compress import CompressionPlan, compress
    from vision.runtime.inference import Classifier
    from vision.training.config import DistillConfig, TrainConfig
    from vision.training.evaluate import evaluate_classifier
    from vision.training.recipe import train_bundle

    task = write_texture_task(tmp / "textures", train_per_class=10, test_per_class=40)
    test = load_folder(task / "test").everything()
    dataset = load_folder(task / "train")
    teacher = load_bundle(train_bundle(dataset, TrainConfig(model="efficientnet_lite0"), tmp / "lite0").path)
    start = time.perf_counter()
    rows = compress(teacher, dataset, CompressionPlan(distill=DistillConfig(**STUDENT), sparsity=SPARSITY, int8=True),
                    tmp / "optimized", check=test)
    seconds = time.perf_counter() - start
    _print_table(f"textures: 3 classes, {len(dataset.train)} training photos, {len(test)} held-out test patches; "
                 f"distil + prune + int8 took {seconds:.0f} s", rows)

    alone_config = TrainConfig(model=STUDENT["student"], input_size=STUDENT["input_size"], epochs=STUDENT["epochs"],
                               batch_size=16, weights=None)
    alone = train_bundle(load_folder(task / "train"), alone_config, tmp / "alone")
    alone_accuracy = evaluate_classifier(Classifier.from_path(alone.path), test, dataset.class_names).accuracy
    original, student = rows[0], rows[1]
    share = student.details["parameters"] / original.details["parameters"]
    print(f"  distillation: student {student.details['parameters']:,} parameters = {share:.3f} of the teacher's "
          f"(target <= 0.1) {_verdict(share <= 0.1)}")
    print(f"  distillation: test accuracy {student.accuracy:.3f} (target >= 0.95) {_verdict(student.accuracy >= 0.95)}"
          f"; the same student from the labels alone: {alone_accuracy:.3f} (reference 0.333)")
    teacher_ms, student_ms, ratio = _latency_ratio(rows, ("original", "distilled"))
    print(f"  student latency {student_ms:.2f} ms vs teacher {teacher_ms:.2f} ms = {ratio:.3f}x (target <= 0.25) "
          f"{_verdict(ratio <= 0.25)}")
    _targets("student", rows, "distilled+pruned", "distilled")
    last = rows[-1]
    print(f"  all together ({last.name}): {last.size_bytes / 1e6:.3f} MB ({last.size_bytes / original.size_bytes:.3f}x"
          f" the teacher's flatbuffer), {last.latency_ms:.2f} ms, test accuracy {last.accuracy:.3f}, agreement "
          f"{last.agreement:.3f}")

    if not prune_lite0:
        return
    start = time.perf_counter()
    lite0 = compress(teacher, dataset, CompressionPlan(sparsity=SPARSITY), tmp / "lite0-pruned", check=test)
    _print_table(f"textures: Lite0 itself pruned ({time.perf_counter() - start:.0f} s)", lite0)
    _targets("Lite0", lite0, "pruned", "original")


def shapes(tmp: Path) -> None:
    from vision.bundle.store import load_bundle
    from vision.data.datasets import Split, load_folder
    from vision.data.synthetic import SHAPES, make_shapes, write_shapes
    from vision.defaults import SHAPES_MODEL
    from vision.optimize.compress import CompressionPlan, compress

    bundle = load_bundle(SHAPES_MODEL)
    dataset = load_folder(write_shapes(tmp / "shapes-data", per_class=250, size=64, seed=0) / "train")
    drawn = make_shapes(per_class=100, seed=99)
    order = np.array([bundle.labels.index(name) for name in SHAPES])  # folders sort the names
    test = Split(order[drawn.labels], images=drawn.images)
    start = time.perf_counter()
    rows = compress(bundle, dataset, CompressionPlan(sparsity=SPARSITY), tmp / "shapes-optimized", check=test)
    _print_table(f"shapes: resnet_small 64 px, {len(dataset.train)} training images, {len(test)} held-out shapes; "
                 f"pruning took {time.perf_counter() - start:.0f} s", rows)
    _targets("shapes", rows, "pruned", "original")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--skip-lite0", action="store_true", help="textures: do not prune Lite0 itself (slow)")
    args = parser.parse_args()
    print(f"model compression, {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.only:
            if task == "textures":
                textures(Path(tmp), prune_lite0=not args.skip_lite0)
            else:
                shapes(Path(tmp))


if __name__ == "__main__":
    main()
