"""Shared fixtures. Everything runs offline on data the tests make."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Before TensorFlow/Keras are imported: quiet logs, and a private Keras home so tests
# never read or write the user's ~/.keras (weights and dataset caches live there).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="vision-keras-home-")
os.environ["VISION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vision-cache-")
os.environ.setdefault("MPLBACKEND", "Agg")
# An app a test starts does not export its page's model unless the test asks for the page
# (``launch_app(..., prepare_web=True)``): each export is a child process with a minute of CPU,
# and an app closed before it ends had it killed, to start again at the next launch.
os.environ["VISION_WEB_SETUP"] = "0"
# The Hub: a private cache, no telemetry, the classic LFS upload path the test server speaks,
# and an endpoint that refuses connections unless a test points it at its own server.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vision-hf-home-")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.pop("HF_TOKEN", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vision.defaults import SHAPES_MODEL  # noqa: E402,F401  (the example model most tests use)

REPO = Path(__file__).resolve().parent.parent
#: Session fixtures of genuine Teachable Machine exports (built on first use only).
pytest_plugins = ["teachable_fixtures"]
_IGNORED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules", "build"}


def repo_files() -> set[str]:
    """Every file in the repository except caches and environments."""
    found = set()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _IGNORED]
        found.update(os.path.relpath(os.path.join(root, f), REPO) for f in files)
    return found


@pytest.fixture
def no_stray_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the test from its tmp folder and fail it if it wrote into the repository
    or next to its tmp folder (where a path-traversal escape would land)."""
    monkeypatch.chdir(tmp_path)
    before_repo = repo_files()
    before_parent = set(os.listdir(tmp_path.parent))
    yield tmp_path
    assert repo_files() == before_repo, "test wrote into the repository"
    assert set(os.listdir(tmp_path.parent)) == before_parent, "test wrote outside its tmp folder"


def texture_task(factory: pytest.TempPathFactory, train_per_class: int, test_per_class: int = 10,
                 patch: int = 96) -> Path:
    """Brick, grass and gravel patches cut from scikit-image's photos, as ``train/`` and ``test/``
    class folders in a new temporary folder (``vision.data.photos.write_texture_task``)."""
    from vision.data.photos import write_texture_task

    return write_texture_task(factory.mktemp("textures"), train_per_class=train_per_class,
                              test_per_class=test_per_class, patch=patch)


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset on disk: train/ and val/ class folders plus boxes.json."""
    from vision.data.synthetic import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shapes"), per_class=10, size=32, seed=1)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, shapes_folder: Path) -> Path:
    """A bundle trained for one epoch at 32 px: quick, and real."""
    from vision.data.datasets import load_folder
    from vision.training.config import TrainConfig
    from vision.training.recipe import train_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    config = TrainConfig(model="simple_cnn", input_size=32, epochs=1, batch_size=16)
    train_bundle(load_folder(shapes_folder), config, out)
    return out


@pytest.fixture(scope="session")
def tm_export(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_bundle`` exported in Teachable Machine's formats (TF.js and Keras, and their zips),
    through the CLI."""
    out = tmp_path_factory.mktemp("tm") / "export"
    env = {**os.environ, "VISION_NATIVE_LOGS": "1"}
    done = subprocess.run([sys.executable, "-m", "vision", "export", str(tiny_bundle), "--format",
                           "teachable-machine", "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "top-1 agreement 100.0%" in done.stdout
    return out


@pytest.fixture(scope="session")
def tiny_detector_bundle(tiny_bundle: Path):
    """``tiny_bundle`` loaded; it has an "unknown" detector, so every output exists."""
    from vision.bundle.store import load_bundle

    loaded = load_bundle(tiny_bundle)
    assert loaded.detector is not None
    return loaded


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


class _VisitorMessages(logging.Handler):
    """Collects what ``vision.ui.errors`` shows visitors (its "visitor sees" debug records)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("visitor sees"):
            self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_server_path_reaches_a_visitor():
    """Every error message any test provokes in the app names no folder of the server:
    not the repository, the temporary folder (sessions, uploads, caches), home or Python."""
    logger = logging.getLogger("vision.app")
    handler, level = _VisitorMessages(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    folders = {str(REPO), tempfile.gettempdir(), str(Path.home()), sys.prefix}
    leaks = [message for message in handler.messages if any(folder in message for folder in folders)]
    assert not leaks, f"a visitor was shown a server path: {leaks}"
