"""Where the shipped models live, and the default model every entry point starts on."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "models"
#: ImageNet-1k on EfficientNet-Lite0: built at set-up from installed packages, not committed.
EVERYDAY_MODEL = MODELS_DIR / "everyday"
#: The synthetic-shapes model: an example, and the pointing-game benchmark's subject.
SHAPES_MODEL = MODELS_DIR / "shapes"

