"""Every way out of the app, each figure beside its target: the CLI on LiteRT, full-int8 TFLite
(post-training and quantization-aware), ONNX Runtime, the SavedModel for TF Serving and the
app's TF Serving REST API.

    python bench/bench_deploy.py [--only cli int8 serving]

Each part is its own script, run here in a fresh process of its own so that no part's
imports, caches or memory colour another's figures (the CLI part times fresh processes
anyway, and its point is what a process that never imports TensorFlow costs):

- ``deploy_cli.py``: ``python -m vision predict photo.jpg`` with its conversion cached,
  wall time and peak memory against ``python -c "import tensorflow"`` and the old
  ``tf.lite.Interpreter`` path, and its output against the old path's;
- ``deploy_int8.py``: full-int8 TFLite against Keras (top-1 on real photos and the few-shot
  texture set, size against float, latency), post-training quantization beside QAT;
- ``deploy_serving.py``: ONNX Runtime and the SavedModel (from encoded bytes) against Keras
  and the library, and the REST API on the app with 8 concurrent clients.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PARTS = {"cli": "deploy_cli.py", "int8": "deploy_int8.py", "serving": "deploy_serving.py"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(PARTS), default=list(PARTS))
    args = parser.parse_args()
    failed = []
    for name in args.only:
        print(f"\n## {name} ({PARTS[name]})", flush=True)
        if subprocess.run([sys.executable, str(BENCH / PARTS[name])]).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"\nfailed to run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
