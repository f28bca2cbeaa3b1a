"""Post-training int8 (PTQ) against quantization-aware training (QAT) where int8 costs accuracy.

    python bench/bench_qat.py [--outliers 1 30 100 300]

The model is ``tests/qat_case.py``'s: a CNN without batch norm on scikit-learn's digits (1,200
to train and calibrate on, 597 held out), with one channel of its first convolution made
``--outliers`` times wider than the rest by a function-preserving rescaling (the float model's
answers are unchanged). For each width it prints the held-out accuracy of the float model, of
PTQ (calibration and bias correction, ``vision.export.int8``), and of QAT
(``vision.training.qat.fine_tune``) at the export's own settings and at the unit test's
(8 epochs at 1e-3), with QAT's distillation loss before and after. A width of 1 is the plain
CNN: int8 costs it well under a point, and QAT has nothing to recover.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

#: The unit test's QAT settings (``tests/test_export_int8.py``).
TEST_EPOCHS, TEST_RATE = 8, 1e-3
CALIBRATION = 96


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outliers", type=float, nargs="+", default=[1.0, 30.0, 100.0, 300.0])
    args = parser.parse_args()

    from qat_case import accuracy, digits, int8_accuracy, outlier_cnn

    from vision.export.int8 import int8_ready
    from vision.training.qat import fine_tune

    (x, y), (test_x, test_y) = digits()
    calibration = x[:CALIBRATION]
    print(f"digits: {len(x)} train, {len(test_x)} held out; calibration and QAT on {CALIBRATION} (and mirrors)")
    print(f"{'outlier':>8} {'float':>7} {'PTQ':>7} {'QAT(export)':>12} {'QAT(test)':>10} "
          f"{'recovered':>10} {'loss before -> after':>22} {'QAT s':>6}")
    for outlier in args.outliers:
        model = outlier_cnn(x, y, outlier=outlier)
        floating = accuracy(model, test_x, test_y)
        ptq = int8_accuracy(int8_ready(model, calibration, "ptq")[0], calibration, test_x, test_y)
        shipped = int8_accuracy(int8_ready(model, calibration, "qat")[0], calibration, test_x, test_y)
        started = time.perf_counter()
        tuned = fine_tune(model, calibration, epochs=TEST_EPOCHS, learning_rate=TEST_RATE)
        seconds = time.perf_counter() - started
        qat = int8_accuracy(tuned.model, calibration, test_x, test_y)
        lost = floating - ptq
        recovered = f"{(qat - ptq) / lost:.0%}" if lost > 0.005 else "-"
        print(f"{outlier:>8g} {floating:>7.2%} {ptq:>7.2%} {shipped:>12.2%} {qat:>10.2%} {recovered:>10} "
              f"{tuned.losses[0]:>10.4f} -> {tuned.losses[-1]:<8.4f} {seconds:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
