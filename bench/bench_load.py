"""Memory with a ceiling: what large photos, explanations and trainings cost the app's process.

    python bench/bench_load.py [--model PATH] [--only classify gradcam scorecam training flood hub
                                                       trainview hostile queue rest]
                               [--trainings 5] [--classifies 1000] [--latency-repeats 20] [--train-runs 20]

Each figure is printed beside its target, with PASS or FAIL:

- classify: one 40-megapixel classify adds <= 300 MB to the peak resident memory, for a
  JPEG and a PNG, through the app's ``ClassifyView.classify`` (what the Classify tab runs)
  and through the library's ``get_classifier(model).classify(path)`` (the Classifier's own
  decode, which the CLI's ``predict`` uses);
- gradcam: Grad-CAM of it, through ``ClassifyView.explain`` (decode, explanation, overlay),
  adds <= 600 MB;
- scorecam: two Score-CAMs at once, of a 40 MP JPEG and a 40 MP PNG, add < 2 GB in all;
- training: resident memory after ``--trainings`` trainings as the app runs them (a
  ``TrainingJob`` with the Train tab's defaults, new photos each time) and ``--classifies``
  classifies of everyday photos is within 300 MB of the resident memory after start-up;
- flood: one session joins the training event 65 times against the app in public mode
  (once accepted, 64 refused) while another visitor classifies: its median round trip
  during the training, against idle;
- hub: a pull over the cap is refused before a file is sent, and a loopback Hub that sends
  200 MB more than it announced is cut off near the 3 MB cap, leaving nothing in the cache;
- trainview: ``--train-runs`` trainings in a row through the running app's Train view, cards
  with a planted mislabel: each answered, none over 3x the median;
- hostile: the 300-byte Dense(65536) ``model.json`` refused in <= 1 s and <= +100 MB; a crafted
  ``.tflite`` through the Models view refused, the app alive, no child process left;
- queue: 200 joins under fresh session hashes, then 71 ``/call/train`` of one session, from a
  second loopback address: another visitor's classify median <= 2x idle;
- rest: 4 senders of 64 MB REST bodies (another client's classify p50 <= 2x idle), then 100
  stalled 60 MB bodies from one address (<= +300 MB resident, all closed within 30 s).

Every peak is measured in a fresh Python process of its own, so no measurement inherits
another's buffers: it warms up what the app keeps warm (the model's classifier and
explainer, one small request through each), resets the kernel's peak counter (VmHWM, via
/proc/self/clear_refs) and makes the request; a thread also samples the resident size every
few milliseconds, for kernels without that reset. The figure is the peak over the resident
memory just before the request.

The photos are made here: a smooth gradient with sensor-like noise at 7296 x 5472 (39.9 MP,
a common 40 MP sensor; 7300 x 5480 would be 40,004,000 pixels, over ``MAX_PIXELS``, and
refused from its header before anything is decoded).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The hub section's loopback test Hub speaks the classic LFS upload, not Xet (read at import).
os.environ["HF_HUB_DISABLE_XET"] = "1"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from timing import concurrent_seconds, machine  # noqa: E402

#: Longest wait for one measuring process (a Score-CAM pair on two busy cores takes ~1 min).
CHILD_TIMEOUT_S = 1800
#: The photos' size: 39.9 MP, under ``vision.data.images.MAX_PIXELS``.
PHOTO_SIZE = (7296, 5472)
MB = 2**20


# -- resident memory -------------------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident memory now, in MB (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        return _proc_status_mb("VmRSS")
    return psutil.Process().memory_info().rss / MB


def _proc_status_mb(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def _reset_peak() -> bool:
    """Set VmHWM back to the current resident size (Linux 4.0+); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Usage:
    """Resident memory around one request, in MB."""

    before: float = 0.0
    peak: float = 0.0
    after: float = 0.0

    @property
    def peak_added(self) -> float:
        return self.peak - self.before

    @property
    def kept(self) -> float:
        return self.after - self.before


@contextmanager
def measured() -> Iterator[Usage]:
    """Measure the block: resident memory before, its peak during, and after (garbage collected)."""
    gc.collect()
    usage = Usage(before=rss_mb())
    usage.peak = usage.before
    exact = _reset_peak()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.003):
            usage.peak = max(usage.peak, rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield usage
    finally:
        stop.set()
        sampler.join()
        if exact:
            usage.peak = max(usage.peak, _proc_status_mb("VmHWM"))
        gc.collect()
        usage.after = rss_mb()


# -- photos ----------------------------------------------------------------------------------


def make_photos(folder: Path) -> dict[str, Path]:
    """A 40 MP JPEG and PNG of the same picture, written to ``folder``."""
    from PIL import Image

    width, height = PHOTO_SIZE
    rng = np.random.default_rng(0)
    # Channel by channel, in float32, so that making the photo costs no more than ~1 GB here.
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    pixels = np.empty((height, width, 3), np.uint8)
    for channel, (along, down) in enumerate(((200, 40), (60, 150), (120, -90))):
        noise = rng.normal(0, 12, (height, width)).astype(np.float32)
        pixels[..., channel] = np.clip(30 + along * x + down * y + noise, 0, 255)
    photos = {"JPEG": folder / "photo-40mp.jpg", "PNG": folder / "photo-40mp.png"}
    Image.fromarray(pixels).save(photos["JPEG"], quality=90)
    # Fast to write; how hard the file was compressed does not change what decoding it holds.
    Image.fromarray(pixels).save(photos["PNG"], compress_level=1)
    return photos


def small_photo() -> Path:
    """An ordinary photo, for warming up (the star example when no photo package is installed)."""
    from vision.data.photos import example_photos

    photos = example_photos()
    return photos[0] if photos else REPO / "docs" / "examples" / "star.png"


# -- what the app runs -----------------------------------------------------------------------


class _OneModel:
    """The part of the app's ``Context`` that ``ClassifyView`` asks for: the active model."""

    def __init__(self, model: str | Path) -> None:
        self.model = Path(model)

    def active_model(self, request: Any) -> tuple[None, Path]:
        return None, self.model


def classify_view(model: str | Path) -> Any:
    """The Classify tab's handlers, on ``model``, as the app builds them."""
    from vision.ui.classify import ClassifyView

    return ClassifyView(_OneModel(model))


# -- measurements, each run in a fresh process -------------------------------------------------


def measure_classify(model: str | Path, photo: str | Path, via: str) -> dict[str, float]:
    """One classify of ``photo``: ``via`` "app" (ClassifyView.classify) or "library"
    (get_classifier(model).classify(path))."""
    from vision.ui.cache import get_classifier

    view = classify_view(model)
    if via == "app":
        def call(image: str | Path) -> Any:
            return view.classify(str(image), 3, None)
    else:
        def call(image: str | Path) -> Any:
            return get_classifier(model).classify(str(image), top_k=3)
    call(small_photo())  # warm, as the app is after its first request
    with measured() as usage:
        call(photo)
    return vars(usage) | {"peak_added": usage.peak_added, "kept": usage.kept}


def measure_explain(model: str | Path, photos: list[str | Path], method: str) -> dict[str, float]:
    """``ClassifyView.explain`` of every photo in ``photos`` with ``method``, all at once
    (one thread each, as concurrent visitors)."""
    from vision.ui.cache import get_explainer

    view = classify_view(model)
    get_explainer(model)
    view.explain(str(small_photo()), method, None, 0.45, None)  # warm: traced, buffers sized
    errors: list[BaseException] = []

    def explain(photo: str | Path) -> None:
        try:
            view.explain(str(photo), method, None, 0.45, None)
        except BaseException as error:  # reported by the parent, not lost in a thread
            errors.append(error)

    with measured() as usage:
        concurrent_seconds([lambda photo=photo: explain(photo) for photo in photos])
    if errors:
        raise errors[0]
    return vars(usage) | {"peak_added": usage.peak_added, "kept": usage.kept}


def measure_trainings(model: str | Path, trainings: int, classifies: int) -> dict[str, Any]:
    """Resident memory after start-up, after each training, and after ``classifies`` classifies."""
    from vision.data.datasets import load_folder
    from vision.data.photos import example_photos, write_texture_task
    from vision.training.config import TrainConfig
    from vision.training.jobs import JobFailed, JobFinished, TrainingJob
    from vision.ui.cache import get_explainer

    view = classify_view(model)
    get_explainer(model)  # the app warms its explainer at launch
    view.classify(str(small_photo()), 3, None)
    gc.collect()
    figures: dict[str, Any] = {"start": rss_mb(), "trainings": []}
    with tempfile.TemporaryDirectory(prefix="bench-load-train-") as tmp:
        for run in range(trainings):
            # New photos every time, as another visitor's: nothing comes from the feature cache.
            task = write_texture_task(Path(tmp) / f"task{run}", train_per_class=10, test_per_class=4,
                                      patch=96, seed=run)
            dataset = load_folder(task / "train")
            # The Train tab's defaults (vision/ui/layout.py, vision/ui/train.py).
            config = TrainConfig(model="efficientnet_lite0", input_size=224, epochs=20, augment=True,
                                 weights="imagenet", batch_size=16 if len(dataset.train) < 200 else 32)
            started = time.perf_counter()
            job = TrainingJob.training(dataset, config, Path(tmp) / f"model{run}").start()
            for update in job.updates():
                if isinstance(update, JobFailed):
                    raise update.error
                if isinstance(update, JobFinished):
                    break
            del job, update
            gc.collect()
            figures["trainings"].append({"rss": rss_mb(), "seconds": time.perf_counter() - started})
        photos = [*example_photos(), *sorted((Path(tmp) / "task0" / "test").rglob("*.png"))]
        for i in range(classifies):
            view.classify(str(photos[i % len(photos)]), 3, None)
    gc.collect()
    figures["end"] = rss_mb()
    return figures


def measure_hostile_json(folder: str) -> dict[str, Any]:
    """The 300-byte Teachable Machine ``model.json`` (Flatten 32x32x4 -> Dense 65536, no weights)
    through ``import_teachable``, as ``python -m vision import-tm`` runs it: seconds to the
    refusal and the peak over the resident memory just before the import started."""
    sys.path.insert(0, str(REPO / "tests"))
    from vision.bundle.teachable import import_teachable
    from vision.errors import VisionError

    from hostile_models import dense_bomb_zip

    archive = dense_bomb_zip(Path(folder) / "bomb.zip")
    with measured() as usage:
        started = time.perf_counter()
        try:
            import_teachable(archive, Path(folder) / "out")
            said = "ACCEPTED (a bug)"
        except VisionError as error:
            said = str(error)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_added": usage.peak_added, "said": said, "bytes": archive.stat().st_size}


MEASUREMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "classify": measure_classify,
    "explain": measure_explain,
    "trainings": measure_trainings,
    "hostile_json": measure_hostile_json,
}


def run_child(kind: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``MEASUREMENTS[kind](**kwargs)`` in a fresh Python process and return its figures."""
    spec = json.dumps({"kind": kind, "kwargs": {k: _jsonable(v) for k, v in kwargs.items()}})
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S, cwd=REPO)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {kind} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def child_main(spec: str) -> None:
    """The measuring process: run one measurement and print its figures as JSON."""
    request = json.loads(spec)  # paths arrive as strings, which every call below takes
    print(json.dumps(MEASUREMENTS[request["kind"]](**request["kwargs"])))


# -- the report ------------------------------------------------------------------------------


@dataclass
class Check:
    """One figure beside its target."""

    what: str
    measured: float
    target: float
    note: str = ""
    unit: str = "MB"

    def line(self) -> str:
        verdict = "PASS" if self.measured <= self.target else "FAIL"
        sign = "+" if self.unit == "MB" else ""  # memory is a growth; times and bytes are not
        digits = 2 if abs(self.measured) < 10 and self.measured != int(self.measured) else 0
        return (f"  {self.what:62s} {self.measured:{sign}8.{digits}f} {self.unit:2s}   target <= {self.target:5.0f} "
                f"{self.unit:2s}   {verdict}" + (f"   ({self.note})" if self.note else ""))


def classify_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """One 40 MP classify, each format, through the app and through the library."""
    checks = []
    for via, name in (("app", "ClassifyView.classify"), ("library", "get_classifier(model).classify(path)")):
        for kind, photo in photos.items():
            usage = run_child("classify", model=args.model, photo=photo, via=via)
            checks.append(Check(f"40 MP {kind} classify, {name}", usage["peak_added"], 300,
                                f"{usage['kept']:+.0f} MB kept after"))
    return checks


def gradcam_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """Grad-CAM of each 40 MP photo through the Classify tab's explain (decode, CAM, overlay)."""
    checks = []
    for kind, photo in photos.items():
        usage = run_child("explain", model=args.model, photos=[photo], method="gradcam")
        checks.append(Check(f"40 MP {kind} Grad-CAM, ClassifyView.explain", usage["peak_added"], 600,
                            f"{usage['kept']:+.0f} MB kept after"))
    return checks


def scorecam_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """Two Score-CAMs at once, of the 40 MP JPEG and the 40 MP PNG."""
    usage = run_child("explain", model=args.model, photos=list(photos.values()), method="scorecam")
    return [Check("two concurrent 40 MP Score-CAMs (JPEG + PNG), ClassifyView.explain", usage["peak_added"], 2048,
                  f"{usage['kept']:+.0f} MB kept after")]


def training_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """Resident memory after trainings and classifies, against after start-up."""
    figures = run_child("trainings", model=args.model, trainings=args.trainings, classifies=args.classifies)
    start = figures["start"]
    print(f"  {'resident after start-up (classifier and explainer warm)':62s} {start:8.0f} MB")
    rows = [(f"after training {run} ({training['seconds']:.0f} s)", training["rss"])
            for run, training in enumerate(figures["trainings"], 1)]
    for label, resident in [*rows, (f"after {args.classifies} classifies", figures["end"])]:
        print(f"  {label:62s} {resident:8.0f} MB   {resident - start:+6.0f} MB over start-up")
    return [Check(f"RSS after {args.trainings} trainings and {args.classifies} classifies, over start-up",
                  figures["end"] - start, 300)]


def _join(url: str, session_hash: str, fn_index: int, data: list) -> int:
    """POST one queue join as the page's client does; the HTTP status."""
    import urllib.error
    import urllib.request

    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session_hash,
                       "event_data": None, "trigger_id": None}).encode()
    request = urllib.request.Request(url + "gradio_api/queue/join", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _classify_ms(client: Any, photo: Path, repeats: int) -> list[float]:
    from gradio_client import handle_file

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.predict(handle_file(str(photo)), 3, api_name="/classify")
        times.append((time.perf_counter() - started) * 1000)
    return times


def flood_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """One session joins the training event 65 times (the attack that filled the queue for
    everyone) while another visitor classifies: its latency idle, and during the training."""
    import statistics

    from gradio_client import Client, handle_file
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    from app_server import launch_app

    photo = small_photo()
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        app, url = launch_app(Path(tmp) / "models", default_model=args.model, public=True)
        try:
            flooder, visitor = Client(url, verbose=False), Client(url, verbose=False)
            for label, shade in (("light", 200), ("dark", 40)):
                samples = []
                for i in range(6):
                    path = Path(tmp) / f"{label}{i}.png"
                    pixels = np.random.default_rng(i).integers(-30, 30, (64, 64, 3)) + shade
                    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
                    samples.append(handle_file(str(path)))
                flooder.predict(label, None, samples, api_name="/add_samples")
            _classify_ms(visitor, photo, 3)  # warm
            idle = _classify_ms(visitor, photo, args.latency_repeats)
            train = next(i for i, fn in app.demo.fns.items() if fn.api_name == "train")
            # simple_cnn at 64 px for 60 epochs: a training that lasts while the visitor is timed
            statuses = [_join(url, flooder.session_hash, train, [None, "simple_cnn", 64, 60, True, False, f"f{i}"])
                        for i in range(65)]
            deadline = time.monotonic() + 60
            while not app.ctx.training_slot.locked():
                if time.monotonic() > deadline:
                    raise RuntimeError("the flood's one training never started")
                time.sleep(0.05)
            flooded = _classify_ms(visitor, photo, args.latency_repeats)
            throughout = app.ctx.training_slot.locked()
            flooder.predict(api_name="/cancel_training")
        finally:
            app.close()
    idle_ms, flooded_ms = statistics.median(idle), statistics.median(flooded)
    print(f"  joins of one session: {statuses.count(200)} accepted, {len(statuses) - statuses.count(200)} refused "
          f"(HTTP {sorted(set(statuses) - {200})})")
    print(f"  another visitor's classify (gradio_client round trip): idle median {idle_ms:.0f} ms, "
          f"with the training running median {flooded_ms:.0f} ms, worst {max(flooded):.0f} ms"
          + ("" if throughout else " (the training ended before the last request)"))
    # "Within its normal latency": the flood itself costs nothing; the one training it is
    # allowed shares the CPUs, which at most doubles the work of a small classify.
    return [Check("joins accepted from one session flooding the training event", statuses.count(200), 1,
                  "the other 64 refused at once", unit=""),
            Check("another visitor's classify during the flood, median", flooded_ms, 2 * idle_ms + 50,
                  f"idle median {idle_ms:.0f} ms; target 2x idle + 50 ms", unit="ms")]


def hub_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """A Hub pull against the loopback test Hub: a repo over the cap is refused before a
    byte is sent, and a server that sends 200 MB more than it announced is cut off."""
    sys.path.insert(0, str(REPO / "tests"))
    from vision.defaults import SHAPES_MODEL
    from vision.errors import LimitExceededError

    from hub_server import HubServer

    token, cap = "hf_bench_owner_000", 3_000_000
    bundle_bytes = sum(p.stat().st_size for p in SHAPES_MODEL.rglob("*") if p.is_file())
    with HubServer({token: ("bench", "write")}) as hub, tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        os.environ["HF_ENDPOINT"] = hub.url
        from vision.hub import pull, push

        push(SHAPES_MODEL, "bench/model", token=token)
        hub.state.sent.clear()
        started = time.perf_counter()
        try:
            pull("bench/model", cache_dir=Path(tmp) / "a", max_bytes=bundle_bytes // 2)
            refused = "ACCEPTED (a bug)"
        except LimitExceededError as error:
            refused = str(error)
        refuse_ms = (time.perf_counter() - started) * 1000
        sent_before_refusal = sum(hub.state.sent.values())
        hub.state.oversize["model.weights.h5"] = 200_000_000
        hub.state.sent.clear()
        try:
            pull("bench/model", cache_dir=Path(tmp) / "b", max_bytes=cap)
            stopped = "ACCEPTED (a bug)"
        except LimitExceededError as error:
            stopped = str(error)
        sent_by_liar = sum(hub.state.sent.values())
        left = sum(p.stat().st_size for p in (Path(tmp) / "b").rglob("*") if p.is_file())
    print(f"  over the cap ({bundle_bytes // 2 / 1e6:.1f} MB): refused in {refuse_ms:.0f} ms: {refused}")
    print(f"  200 MB more than announced, cap {cap / 1e6:.0f} MB: {stopped}")
    return [Check("bytes of files sent before a pull over the cap is refused", sent_before_refusal / MB, 0,
                  unit="MB"),
            Check("MB sent by a server lying about sizes before the pull stops (cap 3 MB)", sent_by_liar / MB, 50,
                  "huggingface_hub reads 10 MB at a time; the rest is socket buffers", unit="MB"),
            Check("bytes left in the cache after the stopped pull", left, 4096, "lock files only", unit="B")]



def hostile_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """Untrusted model files: the 300-byte ``model.json`` refused from its description, and a
    crafted ``.tflite`` that segfaults LiteRT imported through the running app's Models view."""
    import psutil
    from gradio_client import Client, handle_file

    sys.path.insert(0, str(REPO / "tests"))
    from app_server import launch_app
    from hostile_models import crashing_tflite_zip

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        bomb = run_child("hostile_json", folder=tmp)
        print(f"  the model.json's {bomb['bytes']}-byte zip: refused in {bomb['seconds']:.2f} s, "
              f"peak {bomb['peak_added']:+.0f} MB: {bomb['said']}")
        app, url = launch_app(Path(tmp) / "models", default_model=args.model, public=True)
        try:
            client = Client(url, verbose=False)
            children_before = {child.pid for child in psutil.Process().children(recursive=True)}
            try:
                client.predict(handle_file(str(crashing_tflite_zip(Path(tmp) / "crash.zip"))), "crash",
                               api_name="/import_teachable_machine")
                said = "ACCEPTED (a bug)"
            except Exception as error:  # gradio_client raises the app's gr.Error as AppError
                said = str(error)
            time.sleep(1)
            left = {child.pid for child in psutil.Process().children(recursive=True)} - children_before
            alive = bool(client.predict(handle_file(str(small_photo())), 3, api_name="/classify"))
        finally:
            app.close()
    print(f"  crafted .tflite through the Models view: {said}; the app answers a classify after it: {alive}")
    return [Check("seconds to refuse the 300-byte model.json", bomb["seconds"], 1, unit="s"),
            Check("peak memory of that refusal over the import's own start", bomb["peak_added"], 100),
            Check("crafted .tflite: app dead after the import (0 = alive)", int(not alive), 0, unit=""),
            Check("crafted .tflite: child processes left behind", len(left), 0, unit="")]


def _classify_during(client: Any, photo: Path, repeats: int, load: Callable[[], Any]) -> tuple[list[float], Any]:
    """``repeats`` classify round trips while ``load()`` runs in another thread; and what it returned."""
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(value=load()), daemon=True)
    thread.start()
    try:
        times = _classify_ms(client, photo, repeats)
    finally:
        thread.join()
    return times, result.get("value")


def queue_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """Every way into Gradio's queue, flooded in public mode from a second client address, while
    an honest visitor (127.0.0.1) classifies: 200 joins under fresh session hashes, then 71
    ``/call/train`` from one session."""
    import statistics

    from gradio_client import Client

    sys.path.insert(0, str(REPO / "tests"))
    from app_server import launch_app
    from flood_clients import call_route_flood, fresh_hash_flood

    photo, flooder = small_photo(), "127.0.0.2"
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        app, url = launch_app(Path(tmp) / "models", default_model=args.model, public=True)
        try:
            visitor = Client(url, verbose=False)
            _classify_ms(visitor, photo, 3)  # warm
            idle = _classify_ms(visitor, photo, args.latency_repeats)
            train = next(i for i, fn in app.demo.fns.items() if fn.api_name == "train")
            inputs = [None, "simple_cnn", 64, 60, True, False, "flood"]
            joins, by_joins = _classify_during(visitor, photo, args.latency_repeats, lambda: fresh_hash_flood(
                url, 200, fn_index=str(train), data=inputs, source_ip=flooder))
            calls, by_calls = _classify_during(visitor, photo, args.latency_repeats, lambda: call_route_flood(
                url, "train", 71, "one-session", data=inputs, source_ip=flooder))
        finally:
            app.close()
    idle_ms = statistics.median(idle)
    for what, flood in (("200 fresh-hash joins", by_joins), ("71 /call/train of one session", by_calls)):
        refused = {status: n for status, n in flood.statuses.items() if status != 200}
        print(f"  {what}: {flood.accepted} accepted, refused {refused}, in {flood.seconds:.1f} s")
    print(f"  another visitor's classify: idle median {idle_ms:.0f} ms; during the joins "
          f"{statistics.median(joins):.0f} ms, during the calls {statistics.median(calls):.0f} ms")
    return [Check("classify median during 200 fresh-hash joins", statistics.median(joins), 2 * idle_ms,
                  f"idle {idle_ms:.0f} ms; target 2x idle", unit="ms"),
            Check("classify median during 71 /call/train", statistics.median(calls), 2 * idle_ms,
                  f"idle {idle_ms:.0f} ms; target 2x idle", unit="ms")]


def rest_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """TF Serving's REST route under big and stalled bodies, in public mode: 4 senders of 64 MB
    bodies while another client classifies, then 100 stalled 60 MB bodies from one client."""
    import statistics

    from gradio_client import Client

    sys.path.insert(0, str(REPO / "tests"))
    from app_server import launch_app
    from flood_clients import rest_big_senders, stalled_bodies

    photo = small_photo()
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp:
        app, url = launch_app(Path(tmp) / "models", default_model=args.model, public=True)
        try:
            visitor = Client(url, verbose=False)
            _classify_ms(visitor, photo, 3)
            idle = _classify_ms(visitor, photo, args.latency_repeats)
            busy, sent = _classify_during(visitor, photo, args.latency_repeats, lambda: rest_big_senders(
                url, 4, 64 * MB, duration_s=10, source_ip="127.0.0.2"))
            gc.collect()
            with measured() as usage:
                stalls = stalled_bodies(url, 100, 60 * MB, source_ip="127.0.0.3", wait_s=45)
        finally:
            app.close()
    idle_ms, busy_ms = statistics.median(idle), statistics.median(busy)
    statuses = sorted({body.status for body in sent})
    print(f"  {len(sent)} bodies of 64 MB from 4 senders, answered {statuses}; classify p50 idle {idle_ms:.0f} ms, "
          f"during {busy_ms:.0f} ms")
    closed = [seconds for seconds in stalls.closed_after if seconds is not None]
    print(f"  100 stalled 60 MB bodies: answered {sorted(set(stalls.statuses))}, {stalls.still_open} still open "
          f"after 45 s, the last closed after {max(closed, default=0):.1f} s, peak {usage.peak_added:+.0f} MB")
    return [Check("classify p50 during 4 senders of 64 MB REST bodies", busy_ms, 2 * idle_ms,
                  f"idle {idle_ms:.0f} ms; target 2x idle", unit="ms"),
            Check("resident memory added by 100 stalled 60 MB bodies", usage.peak_added, 300),
            Check("seconds until the last stalled body is closed", max(closed, default=0) if not stalls.still_open
                  else float("inf"), 30, unit="s")]


def trainview_section(args: argparse.Namespace, photos: dict[str, Path]) -> list[Check]:
    """``--train-runs`` trainings in a row through the running app's Train view, as a visitor
    makes them: brick/grass/gravel cards with one brick patch filed under grass, the view's
    defaults. Each must be answered (a fork deadlock in the audit hung this forever), none far
    slower than the others."""
    import statistics

    sys.path.insert(0, str(REPO / "tests"))
    from app_server import launch_app
    from train_client import texture_cards, train_through_app

    seconds, failures = [], []
    with tempfile.TemporaryDirectory(prefix="bench-trainview-") as tmp:
        cards = texture_cards(Path(tmp) / "cards")
        app, url = launch_app(Path(tmp) / "models", default_model=args.model)
        try:
            for run in range(args.train_runs):
                try:
                    seconds.append(train_through_app(url, cards, name=f"run{run}")[0])
                except Exception as error:  # a refusal or a hang (TimeoutError): counted, not fatal
                    failures.append(f"run {run}: {type(error).__name__}: {error}"[:200])
                print(f"  run {run + 1}: {seconds[-1] if seconds else float('nan'):.1f} s", flush=True)
        finally:
            app.close()
    median = statistics.median(seconds) if seconds else float("inf")
    print(f"  {len(seconds)} of {args.train_runs} answered; median {median:.1f} s, "
          f"slowest {max(seconds, default=0):.1f} s" + (f"; failures: {failures}" if failures else ""))
    return [Check("trainings not answered", len(failures), 0, unit=""),
            Check("slowest training over the median", max(seconds, default=float("inf")) / median, 3,
                  f"median {median:.1f} s", unit="x")]


#: Report sections in the order they run. Each takes the arguments and the 40 MP photos and
#: returns its checks; a section that needs the running app or the Hub starts it itself.
SECTIONS: dict[str, Callable[[argparse.Namespace, dict[str, Path]], list[Check]]] = {
    "classify": classify_section,
    "gradcam": gradcam_section,
    "scorecam": scorecam_section,
    "training": training_section,
    "flood": flood_section,
    "hub": hub_section,
    "trainview": trainview_section,
    "hostile": hostile_section,
    "queue": queue_section,
    "rest": rest_section,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="a bundle folder (default: the app's default, the everyday-objects model)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                        help="the sections to run (default: all)")
    parser.add_argument("--trainings", type=int, default=5)
    parser.add_argument("--classifies", type=int, default=1000)
    parser.add_argument("--train-runs", type=int, default=20, help="trainings in a row through the Train view")
    parser.add_argument("--latency-repeats", type=int, default=20, help="classifies timed idle and during the flood")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement, in its own process
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return

    from vision.zoo.everyday import default_model

    args.model = (args.model or default_model()).resolve()
    print(f"model {args.model.name}, {machine()}")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        photos = make_photos(Path(tmp))
        sizes = ", ".join(f"{kind} {path.stat().st_size / 1e6:.0f} MB" for kind, path in photos.items())
        print(f"photos: {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({sizes}); peaks over resident memory just before")
        for name in args.only:
            print(f"\n{name}")
            for check in SECTIONS[name](args, photos):
                print(check.line())
                failed += check.measured > check.target
    print(f"\n{'all targets met' if not failed else f'{failed} target(s) missed'}")


if __name__ == "__main__":
    main()
