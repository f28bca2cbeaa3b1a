"""Teachable Machine both ways, with the figures: genuine TM exports (made by TM's own library in
Chromium, ``tests/teachable_fixtures.py``) imported here and held to TM's ``tmImage.predict``, then
exported back and loaded by TM's library again.

    python bench/bench_teachable.py

Prints, per import (TF.js, Keras, float TFLite, uint8 TFLite): max |Δp| and top-1 agreement with
TM in Chromium through the served path, the import time, and the latency of one classification;
then the same for our TM-format export of the TF.js import, run by TM's library.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
from timing import machine  # noqa: E402


def main() -> None:
    from teachable_fixtures import (
        build_base_mobilenet,
        build_tm_exports,
        calibration_images,
        probe_images,
        tm_predict_in_chromium,
    )

    from vision.bundle.store import load_bundle
    from vision.bundle.teachable import import_teachable
    from vision.export.formats import export
    from vision.runtime.inference import Classifier
    from vision.timing import median_ms

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        build_base_mobilenet(root / "mobilenet", calibration_images(root / "calibration"))
        exports = build_tm_exports(root / "tm", root / "mobilenet", classes=3, per_class=4)
        print(f"{machine()}\ngenuine TM exports made with @teachablemachine/image in Chromium: "
              f"{time.perf_counter() - started:.1f} s")
        probes = probe_images(exports)
        reference = np.load(exports["tm_probs"])
        print(f"{len(probes)} held-out 224 px probes, {reference.shape[1]} classes\n")
        print(f"{'import':<18} {'max |Δp| vs TM':>15} {'top-1 vs TM':>12} {'import s':>9} {'ms / image':>11}  target")
        for kind in ("tfjs", "keras", "tflite", "tflite_quantized"):
            started = time.perf_counter()
            folder = import_teachable(exports[f"{kind}_zip"], root / "imported" / kind)
            seconds = time.perf_counter() - started
            classifier = Classifier(load_bundle(folder))
            served = np.stack([classifier.probabilities(path) for path in probes])
            dp = float(np.abs(served - reference).max())
            agree = float(np.mean(served.argmax(1) == reference.argmax(1)))
            ms = median_ms(lambda c=classifier: c.probabilities(probes[0]))
            target = "top-1 equal" if kind == "tflite_quantized" else "≤ 1e-4"
            print(f"{kind:<18} {dp:>15.2e} {agree:>12.0%} {seconds:>9.1f} {ms:>11.2f}  {target}")
            if kind == "tflite_quantized":
                # How much of that is the uint8 model itself: its flatbuffer run directly on the raw
                # pixels (its input quantization is q = pixel), as TM's own TFLite snippet runs it.
                direct = _run_flatbuffer(next(exports[kind].glob("*.tflite")), probes)
                print(f"{'  (the flatbuffer run directly on raw pixels: max |Δp| vs the import':<60} "
                      f"{float(np.abs(direct - served).max()):.2e}, top-1 vs TM "
                      f"{float(np.mean(direct.argmax(1) == reference.argmax(1))):.0%})")
        bundle = load_bundle(root / "imported" / "tfjs")
        result = export(bundle, "teachable-machine", root / "back")
        in_tm = tm_predict_in_chromium(result.path / "tfjs", probes)
        ours = np.stack([Classifier(bundle).probabilities(path) for path in probes])
        print(f"\nexport back (teachable-machine), loaded by tmImage in Chromium: max |Δp| vs Python "
              f"{float(np.abs(in_tm - ours).max()):.2e} (target ≤ 1e-4), top-1 "
              f"{float(np.mean(in_tm.argmax(1) == ours.argmax(1))):.0%}; export's own check "
              f"{result.parity['max_abs_dp']:.2e}, {result.size_bytes / 1e6:.2f} MB")


def _run_flatbuffer(path: Path, probes: list[Path]) -> np.ndarray:
    from PIL import Image

    from vision.runtime.int8 import dequantize
    from vision.runtime.tflite import TFLiteRunner

    runner = TFLiteRunner(path.read_bytes())
    output = runner.interpreter.get_output_details()[0]
    return np.stack([dequantize(runner(np.asarray(Image.open(p).convert("RGB"), np.uint8))[0], output)
                     for p in probes])


if __name__ == "__main__":
    main()
