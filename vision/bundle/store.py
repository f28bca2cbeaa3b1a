"""The model bundle: one folder per model, loadable by Keras alone.

Layout (Keras 3's own unzipped format at the root, as it writes for ``hf://``)::

    my-model/
      config.json  metadata.json  model.weights.h5  assets/   <- keras.saving.load_model(folder)
      vision.json   labels, preprocessing, architecture, training, metrics, dataset, versions
      README.md     model card

Saves are atomic: everything is written to a hidden temporary sibling folder that is
renamed into place, so a crash never leaves a half-written bundle under the real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vision import __version__
from vision.bundle.examples import is_example_name
from vision.bundle.modelcard import CARD_FIELDS, render_model_card
from vision.data.images import Preprocessing
from vision.errors import BundleExistsError, InvalidBundleError, ModelNotFoundError
from vision.trust.ood import OOD_FILE, load_detector

INFO_FILE = "vision.json"
FORMAT = "vision-bundle/1"
KERAS_FILES = ("config.json", "model.weights.h5")
#: The flatbuffer of a TFLite-only bundle (imported from a Teachable Machine TFLite export).
TFLITE_FILE = "model.tflite"
TFLITE_ONLY = "tflite-only"
_REQUIRED_KEYS = ("labels", "preprocessing", "architecture")
#: Pictures a trained bundle carries beside its model.
CURVES_FILE = "training_curves.png"
#: Longest title, description or author a card keeps (a header line, not an essay).
MAX_CARD_CHARS = 300
CONFUSION_FILE = "confusion_matrix.png"
RELIABILITY_FILE = "reliability.png"


class Bundle:
    """A bundle's ``vision.json`` contents, and its Keras model, loaded on first use.

    ``open_bundle`` reads only ``vision.json``: a caller served from the TFLite cache
    (``vision.runtime.tflite.cached_flatbuffer``) never pays for loading the Keras model.
    """

    def __init__(self, path: Path, info: dict[str, Any], model: Any = None) -> None:
        self.path = path
        self.info = info
        self._model = model
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._detector: Any = None

    @property
    def model(self) -> Any:
        """The Keras model (safe mode), loaded and checked against ``vision.json`` once."""
        with self._lock:
            if self._model is None:
                if self.tflite_only:
                    raise InvalidBundleError(
                        f"'{self.name}' came as a TFLite file only, so there is no Keras model: Grad-CAM, training "
                        "it further and exports other than TFLite need its Keras or TF.js export")
                self._model = _load_keras_model(self.path, self.info)
            return self._model

    @property
    def tflite_only(self) -> bool:
        """True for a bundle that holds a TFLite flatbuffer instead of a Keras model."""
        return is_tflite_only(self.info)

    @property
    def detector(self) -> Any:
        """The "unknown" detector (``vision.trust.ood.Detector``), or None for a bundle without one."""

        with self._lock:
            if self._detector is None and self.info.get("ood"):
                self._detector = load_detector(self.path, self.info)
            return self._detector

    @property
    def fingerprint(self) -> str:
        """sha256 over the Keras files, the preprocessing and the detector: what derived
        artefacts are keyed by."""
        if self._fingerprint is None:
            ood = self.info.get("ood") or {}
            digest = hashlib.sha256(json.dumps([self.info["preprocessing"], ood], sort_keys=True).encode())
            for name in (*model_files(self.info), OOD_FILE) if ood.get("file") else model_files(self.info):
                with open(self.path / name, "rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.info["preprocessing"])

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.name)


def make_info(name: str, labels: list[str], architecture: str, preprocessing: Preprocessing,
              **extra: Any) -> dict[str, Any]:
    """A fresh ``vision.json`` dict; ``extra`` adds training, metrics, dataset, etc."""
    return {
        "format": FORMAT,
        "name": name,
        "labels": list(labels),
        "architecture": architecture,
        "preprocessing": preprocessing.to_dict(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        **extra,
    }


def versions() -> dict[str, str]:
    import keras  # lazy: reading vision.json and listing bundles need no Keras
    import tensorflow as tf  # lazy: reading vision.json and listing bundles need no Keras

    return {"vision": __version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "python": platform.python_version()}


def is_tflite_only(info: dict[str, Any]) -> bool:
    """Whether the bundle described by ``info`` holds a TFLite flatbuffer, not a Keras model."""
    runtime = info.get("runtime")
    return isinstance(runtime, dict) and runtime.get("kind") == TFLITE_ONLY


def model_files(info: dict[str, Any]) -> tuple[str, ...]:
    """The files that hold the model of the bundle described by ``info``."""
    return (TFLITE_FILE,) if is_tflite_only(info) else KERAS_FILES


def save_bundle(model: Any, info: dict[str, Any], folder: str | Path, overwrite: bool = False,
                extra_files: dict[str, bytes] | None = None, examples: dict[str, bytes] | None = None) -> Path:
    """Write ``model`` and ``info`` as a bundle at ``folder``, atomically.

    ``extra_files`` (name -> bytes) are written beside them, e.g. training plots;
    ``examples`` (``"examples/<file>"`` -> JPEG, ``vision.bundle.examples.pick_examples``) into
    ``examples/``.

    Raises:
        InvalidBundleError: ``info`` lacks a required key, its labels do not match the
            model's outputs, or ``folder`` exists and ``overwrite`` is False.
    """
    import keras  # lazy: reading vision.json and listing bundles need no Keras

    folder = Path(folder)
    _validate_info(info, folder)
    _check_model_matches(model, info, folder)
    return _write_bundle(folder, info, overwrite, {**(extra_files or {}), **(examples or {})},
                         lambda staging: keras.saving.save_model(model, staging, zipped=False))


def save_tflite_bundle(flatbuffer: bytes, info: dict[str, Any], folder: str | Path,
                       overwrite: bool = False) -> Path:
    """Write a TFLite-only bundle (``info["runtime"]["kind"] == "tflite-only"``) atomically.

    Raises:
        InvalidBundleError: as ``save_bundle``, or ``info`` does not say TFLite-only.
    """
    folder = Path(folder)
    _validate_info(info, folder)
    if not is_tflite_only(info):
        raise InvalidBundleError(f"'{folder.name}': a TFLite-only bundle needs runtime.kind '{TFLITE_ONLY}'")

    def write(staging: Path) -> None:
        staging.mkdir()
        (staging / TFLITE_FILE).write_bytes(flatbuffer)

    return _write_bundle(folder, info, overwrite, None, write)


def _write_bundle(folder: Path, info: dict[str, Any], overwrite: bool, extra_files: dict[str, bytes] | None,
                  write_model: Callable[[Path], None]) -> Path:
    if folder.exists() and not overwrite:
        raise BundleExistsError(f"a model already exists at '{folder}'; choose another name or overwrite")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write_model(staging)
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))
        (staging / "README.md").write_text(render_model_card(info))
        for name, data in (extra_files or {}).items():
            # Flat names, but for the examples folder's own pattern (``vision.bundle.examples``).
            target = staging / (name if is_example_name(name) else Path(name).name)
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(data)
        _fsync_tree(staging)
        _swap_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _swap_into_place(staging: Path, folder: Path) -> None:
    if not folder.exists():
        os.replace(staging, folder)
        return
    # Directories cannot be replaced in one rename: move the old one aside first, and put
    # it back if the second rename fails, so the name always holds a complete bundle.
    retired = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(folder, retired)
    try:
        os.replace(staging, folder)
    except OSError:
        os.replace(retired, folder)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def read_info(folder: str | Path) -> dict[str, Any]:
    """``vision.json`` of the bundle at ``folder``, validated, without loading the model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotFoundError(f"no model bundle at '{folder}'")
    if not (folder / INFO_FILE).is_file():
        raise InvalidBundleError(f"'{folder}' is not a complete model bundle: missing {INFO_FILE}")
    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidBundleError(f"'{folder / INFO_FILE}' is not valid JSON ({error})") from None
    _validate_info(info, folder)
    missing = [name for name in model_files(info) if not (folder / name).is_file()]
    if missing:
        raise InvalidBundleError(f"'{folder}' is not a complete model bundle: missing {', '.join(missing)}")
    return info


def load_bundle(folder: str | Path) -> Bundle:
    """Load and validate the bundle at ``folder`` (Keras safe mode: no code in configs).

    Raises:
        ModelNotFoundError: nothing at ``folder``.
        InvalidBundleError: a file is missing or damaged, or the labels do not match the
            model; the message names what is wrong.
    """
    bundle = open_bundle(folder)
    if not bundle.tflite_only:
        _ = bundle.model  # load and validate now
    return bundle


def open_bundle(folder: str | Path) -> Bundle:
    """The bundle at ``folder`` with ``vision.json`` validated; the model loads on first use.

    Raises:
        ModelNotFoundError, InvalidBundleError: as ``read_info``.
    """
    folder = Path(folder)
    return Bundle(folder, read_info(folder))


def _load_keras_model(folder: Path, info: dict[str, Any]) -> Any:
    import keras  # lazy: reading vision.json and listing bundles need no Keras

    try:
        model = keras.saving.load_model(folder, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, TypeError... for bad files
        raise InvalidBundleError(f"the Keras model in '{folder}' cannot be loaded: {error}") from None
    _check_model_matches(model, info, folder)
    return model


def describe_bundle(folder: str | Path, **card: str | None) -> dict[str, Any]:
    """Set the bundle's card fields (``title``, ``description``, ``author``: what the app's
    Classify view and page show) in ``vision.json`` and its ``README.md``; a None field is
    left as it is, an empty one removed. Returns the new ``card``.

    Each file is replaced by a rename, so a reader sees the old text or the new.

    Raises:
        ModelNotFoundError, InvalidBundleError: as ``read_info``; a field that is not a card
            field, or longer than ``MAX_CARD_CHARS``.
    """
    folder = Path(folder)
    info = read_info(folder)
    current = dict(info.get("card") or {})
    for key, value in card.items():
        if key not in CARD_FIELDS:
            raise InvalidBundleError(f"'{key}' is not a card field ({', '.join(CARD_FIELDS)})")
        if value is None:
            continue
        value = " ".join(str(value).split())  # one line: the header shows it as one
        if len(value) > MAX_CARD_CHARS:
            raise InvalidBundleError(f"the {key} is {len(value)} characters; keep it under {MAX_CARD_CHARS}")
        if value:
            current[key] = value
        else:
            current.pop(key, None)
    info["card"] = current
    for name, text in ((INFO_FILE, json.dumps(info, indent=2, sort_keys=True)), ("README.md", render_model_card(info))):
        staging = folder / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.write_text(text)
        os.replace(staging, folder / name)
    return current


def list_bundles(root: str | Path) -> list[dict[str, Any]]:
    """``vision.json`` of every valid bundle directly under ``root``, with ``path`` added."""
    root = Path(root)
    found = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if child.name.startswith(".") or not child.is_dir():
            continue  # hidden staging folders of saves in progress
        try:
            info = read_info(child)
        except (InvalidBundleError, ModelNotFoundError):
            continue
        found.append({**info, "path": str(child)})
    return found


def copy_bundle(source: str | Path, folder: str | Path) -> Path:
    """Copy the bundle at ``source`` to ``folder`` atomically (a new name only).

    Raises:
        BundleExistsError: ``folder`` exists. InvalidBundleError, ModelNotFoundError:
            ``source`` is not a valid bundle.
    """
    source, folder = Path(source), Path(folder)
    read_info(source)
    if folder.exists():
        raise BundleExistsError(f"a model named '{folder.name}' already exists; choose another name")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(source, staging)
        _fsync_tree(staging)
        os.replace(staging, folder)  # fails, rather than merges, if the name appeared meanwhile
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def delete_bundle(folder: str | Path) -> None:
    """Remove the bundle at ``folder``; refuses folders that are not bundles."""
    folder = Path(folder)
    read_info(folder)  # raises unless it really is a bundle
    retired = folder.parent / f".{folder.name}.deleted-{uuid.uuid4().hex[:8]}"
    os.replace(folder, retired)  # atomic disappearance, then the slow part
    shutil.rmtree(retired, ignore_errors=True)


def _validate_info(info: Any, folder: Path) -> None:
    if not isinstance(info, dict):
        raise InvalidBundleError(f"'{folder / INFO_FILE}' must hold a JSON object")
    missing = [key for key in _REQUIRED_KEYS if key not in info]
    if missing:
        raise InvalidBundleError(f"'{folder / INFO_FILE}' lacks {', '.join(missing)}")
    labels = info["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise InvalidBundleError(f"'{folder / INFO_FILE}': labels must be a list of at least two strings")
    if len(set(labels)) != len(labels):
        raise InvalidBundleError(f"'{folder / INFO_FILE}': labels repeat: {labels}")
    try:
        Preprocessing.from_dict(info["preprocessing"])
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidBundleError(f"'{folder / INFO_FILE}': bad preprocessing ({error})") from None


def _check_model_matches(model: Any, info: dict[str, Any], folder: Path) -> None:
    outputs = model.outputs[0].shape[-1]
    if outputs != len(info["labels"]):
        raise InvalidBundleError(
            f"model at '{folder}' has {outputs} outputs but {len(info['labels'])} labels"
        )
    height, width = Preprocessing.from_dict(info["preprocessing"]).size
    shape = tuple(model.inputs[0].shape[1:3])
    if shape != (height, width):
        raise InvalidBundleError(
            f"model at '{folder}' takes {shape} images but its preprocessing says {(height, width)}"
        )
