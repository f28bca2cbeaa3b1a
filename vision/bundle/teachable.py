"""Teachable Machine's image exports, brought in as bundles.

Teachable Machine (TM) hands its users one of three zips:

- TF.js: ``model.json`` + ``weights.bin`` + ``metadata.json`` (labels, image size, grayscale)
- Keras: ``keras_model.h5`` (tf.keras 2, converted from the TF.js model) + ``labels.txt``
- TFLite: ``model_unquant.tflite`` (float) or ``model.tflite`` (uint8 in and out) + ``labels.txt``;
  its "embedded" export is one 96x96 grayscale int8 ``.tflite`` of any name + ``labels.txt``

The first two become ordinary Keras 3 bundles (``vision.models.layers_config`` rebuilds the
topology as data and loads the weights by name), so Grad-CAM, fine-tuning, the "unknown"
detector, every export and the Hub work on them. A TFLite zip becomes a bundle that holds
the flatbuffer as it came: it classifies, evaluates and exports to TFLite, and says plainly
that Grad-CAM and training need the Keras or TF.js export.

Every bundle records TM's preprocessing (centre square crop, ``x / 127 - 1``, grayscale if
set), so each runtime here feeds the model what TM's library feeds it. Everything is read
as data and bounded: an import is as untrusted as any upload.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision.bundle.store import make_info, save_bundle, save_tflite_bundle
from vision.bundle.tflite_check import check_tflite
from vision.data.archives import extract_zip
from vision.data.images import Preprocessing
from vision.errors import InvalidModelFileError, UnsafeArchiveError, VisionError
from vision.models.layers_config import check_cost, rebuild

#: TM's library scales pixels by ``x / 127 - 1``, not MobileNet's ``x / 127.5 - 1``; the
#: import keeps TM's so that predictions match the page the model came from.
TM_SCALE = 1 / 127
TM_OFFSET = -1.0
ARCHITECTURE = "teachable-machine"
#: Caps: TM's own MobileNet exports are 2-10 MB; these leave room without inviting abuse.
MAX_ZIP_BYTES = 300 * 1024**2
MAX_JSON_BYTES = 20 * 1024**2
MAX_WEIGHT_BYTES = 250 * 1024**2
MAX_CLASSES = 1000
MAX_LABEL_CHARS = 200
#: Brackets open at once in a JSON file: TM's model.json nests about 10 deep; Python's parser
#: recurses once per level and ends in a RecursionError near 1,000.
MAX_JSON_DEPTH = 64
#: HDF5 filters a weight may be stored with: HDF5's own deflate, shuffle and checksum, and
#: h5py's LZF. Anything else would load a filter plugin from the disk.
H5_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
#: What h5py and the parsing raise for a damaged or hostile file: OSError (HDF5 itself),
#: KeyError (a missing object), ValueError (bad data, JSON, Unicode), TypeError (an attribute
#: of an unexpected kind), RuntimeError (HDF5's internal errors, RecursionError included),
#: IndexError and AttributeError (a link or attribute that is not what its name says).
_H5_FAILURES = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
KINDS = ("tfjs", "keras", "tflite")
#: An attribute of a ``keras_model.h5`` exported here (``vision.export.teachable``): what its
#: input is divided by before subtracting 1. TM's own Keras exports carry none and expect 127.
DIVISOR_ATTRIBUTE = "vision_input_divisor"


@dataclass(frozen=True)
class TeachableExport:
    """A recognised TM export in a folder: which kind, and its labels and metadata."""

    kind: str
    folder: Path
    labels: list[str]
    metadata: dict[str, Any]


def import_teachable(source: str | Path, out: str | Path, name: str | None = None,
                     overwrite: bool = False, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Import the TM export ``source`` (its zip, or a folder of its files) as a bundle at ``out``.

    Args:
        source: The zip TM gave you, or the folder it was unpacked into.
        out: The bundle folder to write (atomically).
        name: The bundle's display name; TM's ``modelName`` or the file's name by default.
        overwrite: Replace an existing bundle at ``out``.
        max_bytes: What the zip may unpack to (e.g. a session's remaining disk quota).

    Returns:
        ``out``.

    Raises:
        InvalidModelFileError: not a TM export, or a file in it is malformed, too large or
            uses a layer type that is not accepted (Lambda, custom classes).
        UnsafeArchiveError: a hostile zip.
        BundleExistsError: ``out`` exists and ``overwrite`` is False.
    """
    source = Path(source)
    with tempfile.TemporaryDirectory(prefix="vision-tm-") as scratch:
        folder = _unpacked(source, Path(scratch), max_bytes)
        export = find_export(folder)
        display = name or str(export.metadata.get("modelName") or source.stem)[:MAX_LABEL_CHARS]
        if export.kind == "tflite":
            return _import_tflite(export, Path(out), display, overwrite)
        model, preprocessing = load_teachable_model(export)
        info = make_info(display, export.labels, ARCHITECTURE, preprocessing, source=_provenance(export))
        return save_bundle(model, info, out, overwrite=overwrite)


def find_export(folder: Path) -> TeachableExport:
    """Which TM export ``folder`` holds (looking one folder deep, as zips often nest).

    A TFLite export is ``labels.txt`` beside one ``.tflite`` file of any name: TM's own zips
    call it ``model_unquant.tflite`` or ``model.tflite``, its "embedded" export (96x96
    grayscale int8, for microcontrollers) whatever the project was called. The file used is
    recorded in the export's metadata under ``"file"``.

    Raises:
        InvalidModelFileError: none of TM's exports is there; the message names what is.
    """
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    for place in candidates:
        if (place / "model.json").is_file():
            metadata = _read_metadata(place / "metadata.json")
            return TeachableExport("tfjs", place, _labels_from_metadata(metadata), metadata)
        if (place / "keras_model.h5").is_file():
            return TeachableExport("keras", place, read_labels(place / "labels.txt"), {})
        file = _tflite_file(place)
        if file is not None:
            return TeachableExport("tflite", place, read_labels(place / "labels.txt"), {"file": file.name})
    raise InvalidModelFileError(
        f"this is not a Teachable Machine export: {_layout(candidates)}; expected model.json + metadata.json + "
        "weights.bin (TF.js), keras_model.h5 + labels.txt (Keras) or one .tflite file + labels.txt (TFLite)")


def _tflite_file(place: Path) -> Path | None:
    """The one ``.tflite`` beside ``labels.txt`` in ``place``; TM's float file first when a
    folder holds TM's two. None when there is no labels.txt, or no single candidate."""
    if not (place / "labels.txt").is_file():
        return None
    files = sorted(p for p in place.glob("*.tflite") if p.is_file())
    for preferred in ("model_unquant.tflite", "model.tflite"):
        if place / preferred in files:
            return place / preferred
    return files[0] if len(files) == 1 else None


def _layout(places: list[Path]) -> str:
    """What was found instead, in words: the files of the zip's top folders (a few named)."""
    names = sorted({p.name for place in places for p in place.iterdir() if p.is_file()})
    if not names:
        return "the zip holds no files"
    tflite = [name for name in names if name.endswith(".tflite")]
    if len(tflite) > 1 and "labels.txt" in names:
        return f"it holds {len(tflite)} .tflite files ({', '.join(tflite[:4])}) and TM's zips hold one"
    shown = ", ".join(repr(name[:60]) for name in names[:6])
    return f"it holds {shown}" + (f" and {len(names) - 6} more files" if len(names) > 6 else "")


def load_teachable_model(export: TeachableExport) -> tuple[Any, Preprocessing]:
    """The Keras 3 model of a TF.js or Keras export, weights loaded, and its preprocessing.

    Raises:
        InvalidModelFileError: see ``import_teachable``.
    """
    divisor = 1 / TM_SCALE
    if export.kind == "tfjs":
        topology, weights = _read_tfjs(export.folder)
        where = "model.json"
    elif export.kind == "keras":
        topology, weights, divisor = _read_h5(export.folder / "keras_model.h5")
        where = "keras_model.h5"
    else:
        raise InvalidModelFileError(f"a {export.kind} export has no Keras model to rebuild")
    rebuilt = rebuild(topology, where)
    rebuilt.load_weights(weights, where)
    model = rebuilt.model
    classes = int(model.output.shape[-1])
    if classes != len(export.labels):
        raise InvalidModelFileError(f"{where}: the model has {classes} outputs but there are "
                                    f"{len(export.labels)} labels")
    return model, _preprocessing(model.input.shape, export.metadata, divisor)


def read_labels(path: Path) -> list[str]:
    """TM's ``labels.txt``: one ``"<index> <label>"`` per line, in output order.

    The index is checked and split off at the first space (TM's snippet cuts two characters,
    which breaks from the tenth class on).

    Raises:
        InvalidModelFileError: missing, too large, or the indices are not 0, 1, 2, ...
    """
    text = _read_text(path, 1024 * 1024)
    labels = []
    for number, line in enumerate(line for line in text.splitlines() if line.strip()):
        index, _, label = line.strip().partition(" ")
        if index != str(number) or not label.strip():
            raise InvalidModelFileError(f"labels.txt line {number + 1} is {line[:60]!r}; "
                                        f"expected '{number} <label>'")
        labels.append(label.strip()[:MAX_LABEL_CHARS])
    return _checked_labels(labels, "labels.txt")


# --- reading the files ------------------------------------------------------------------------

def _unpacked(source: Path, scratch: Path, max_bytes: int) -> Path:
    if source.is_dir():
        return source
    if not source.is_file():
        raise InvalidModelFileError(f"'{source.name}' does not exist")
    try:
        return extract_zip(source, scratch / "export", max_total_bytes=min(max_bytes, MAX_ZIP_BYTES), max_files=64)
    except UnsafeArchiveError:
        raise
    except VisionError as error:  # not a zip, or a damaged one: say so in the import's terms
        raise InvalidModelFileError(f"{error} (Teachable Machine exports are zip files)") from None


def _read_text(path: Path, cap: int) -> str:
    if not path.is_file():
        raise InvalidModelFileError(f"{path.name} is missing")
    if path.stat().st_size > cap:
        raise InvalidModelFileError(f"{path.name} is {path.stat().st_size:,} bytes; at most {cap:,} are accepted")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidModelFileError(f"{path.name} is not UTF-8 text") from None


def _read_json(path: Path) -> Any:
    return parse_json(_read_text(path, MAX_JSON_BYTES), path.name)


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` of an untrusted ``text``, its nesting bounded by ``MAX_JSON_DEPTH``
    before it is parsed (the parser recurses once per level).

    Raises:
        InvalidModelFileError: not JSON, or nested deeper than the bound.
    """
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidModelFileError(f"{where} nests {depth:,} levels deep; at most {MAX_JSON_DEPTH} are accepted")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidModelFileError(f"{where} is not valid JSON ({error.msg}, line {error.lineno})") from None
    except RecursionError:  # not reached under the bound; kept so no parse can end in a traceback
        raise InvalidModelFileError(f"{where} nests too deep to read") from None


def json_depth(text: str) -> int:
    """The most brackets (``[`` and ``{``) open at once in ``text``, strings left out: a linear
    scan in numpy, so a 20 MB file costs milliseconds and no recursion."""
    skeleton = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    codes = np.frombuffer(skeleton, np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _read_metadata(path: Path) -> dict[str, Any]:
    metadata = _read_json(path)
    if not isinstance(metadata, dict):
        raise InvalidModelFileError("metadata.json is not a JSON object")
    return metadata


def _labels_from_metadata(metadata: dict[str, Any]) -> list[str]:
    labels = metadata.get("labels")
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise InvalidModelFileError("metadata.json has no list of labels")
    return _checked_labels([label.strip()[:MAX_LABEL_CHARS] for label in labels], "metadata.json")


def _checked_labels(labels: list[str], where: str) -> list[str]:
    if not 2 <= len(labels) <= MAX_CLASSES:
        raise InvalidModelFileError(f"{where}: {len(labels)} classes; a classifier needs 2 to {MAX_CLASSES}")
    if len(set(labels)) != len(labels) or not all(labels):
        raise InvalidModelFileError(f"{where}: labels must be distinct and not empty")
    return labels


def _read_tfjs(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    model = _read_json(folder / "model.json")
    if not isinstance(model, dict) or model.get("format", "layers-model") != "layers-model":
        raise InvalidModelFileError("model.json is not a TF.js layers model (TM exports one)")
    topology = model.get("modelTopology")
    if isinstance(topology, dict) and "model_config" in topology:
        topology = topology["model_config"]
    if not isinstance(topology, dict):
        raise InvalidModelFileError("model.json has no modelTopology")
    # Counted from the config alone, before any weight file is read or any layer built.
    check_cost(topology, "model.json")
    manifest = model.get("weightsManifest")
    if not isinstance(manifest, list):
        raise InvalidModelFileError("model.json has no weightsManifest")
    weights: dict[str, np.ndarray] = {}
    total = 0
    for group in manifest:
        specs, data = _manifest_group(folder, group)
        offset = 0
        for spec in specs:
            name, shape, count = _weight_spec(spec)
            total += 4 * count
            if total > MAX_WEIGHT_BYTES or offset + 4 * count > len(data):
                raise InvalidModelFileError(f"model.json: weight {name!r} runs past the end of its weight files")
            weights[name] = np.frombuffer(data, "<f4", count, offset).reshape(shape).copy()
            offset += 4 * count
        if offset != len(data):
            raise InvalidModelFileError(f"model.json: the weights use {offset:,} of the files' {len(data):,} bytes")
    return topology, weights


def _manifest_group(folder: Path, group: Any) -> tuple[list[Any], bytes]:
    if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
            or not isinstance(group.get("weights"), list):
        raise InvalidModelFileError("model.json: a weightsManifest entry has no paths and weights")
    data = bytearray()
    for path in group["paths"]:
        # Only files beside model.json: a manifest must not read anything else on the disk.
        if not isinstance(path, str) or "/" in path or "\\" in path or path in ("", ".", ".."):
            raise InvalidModelFileError(f"model.json: weight file {str(path)[:60]!r} is not a plain file name")
        file = folder / path
        if not file.is_file():
            raise InvalidModelFileError(f"model.json names {path!r}, which is not in the export")
        if len(data) + file.stat().st_size > MAX_WEIGHT_BYTES:
            raise InvalidModelFileError(f"the weight files are over {MAX_WEIGHT_BYTES:,} bytes")
        data += file.read_bytes()
    return group["weights"], bytes(data)


def _weight_spec(spec: Any) -> tuple[str, tuple[int, ...], int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("shape"), list):
        raise InvalidModelFileError("model.json: a weight entry without name and shape")
    name, shape = spec["name"], spec["shape"]
    if spec.get("dtype", "float32") != "float32" or spec.get("quantization"):
        raise InvalidModelFileError(f"model.json: weight {name[:60]!r} is not float32 (TM exports float32)")
    if len(shape) > 5 or not all(isinstance(n, int) and 0 < n <= 1 << 24 for n in shape):
        raise InvalidModelFileError(f"model.json: weight {name[:60]!r} has shape {str(shape)[:60]}")
    count = int(np.prod(shape, dtype=np.int64))
    if 4 * count > MAX_WEIGHT_BYTES:
        raise InvalidModelFileError(f"model.json: weight {name[:60]!r} declares {count:,} values")
    return name, tuple(shape), count


def _read_h5(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], float]:
    """The topology, the weights, and what the input is divided by: TM's 127, or what a Keras
    export made here records (``vision.export.teachable.DIVISOR_ATTRIBUTE``).

    The topology is costed (``check_cost``) before any weight is read; any failure of h5py on
    a damaged or hostile file becomes a refusal that names the file, never a traceback."""
    import h5py  # lazy: only Keras .h5 files need h5py (installed with Keras)

    if path.stat().st_size > MAX_WEIGHT_BYTES:
        raise InvalidModelFileError(f"{path.name} is over {MAX_WEIGHT_BYTES:,} bytes")
    try:
        with h5py.File(path, "r") as h5:
            config = h5.attrs.get("model_config")
            if config is None:
                raise InvalidModelFileError(f"{path.name} holds weights only; TM's Keras export has the model too")
            if len(config) > MAX_JSON_BYTES:
                raise InvalidModelFileError(f"{path.name}: model_config is over {MAX_JSON_BYTES:,} bytes")
            topology = parse_json(config.decode() if isinstance(config, bytes) else str(config), path.name)
            if not isinstance(topology, dict):
                raise InvalidModelFileError(f"{path.name}: model_config is not an object")
            check_cost(topology, path.name)
            group = _h5_child(h5, "model_weights", path.name) if "model_weights" in h5 else h5
            weights = _h5_weights(group, path.name)
            divisor = float(h5.attrs.get(DIVISOR_ATTRIBUTE, 1 / TM_SCALE))
            if divisor not in (127.0, 127.5):
                raise InvalidModelFileError(f"{path.name}: input divisor {divisor:g} is neither 127 nor 127.5")
    except InvalidModelFileError:
        raise
    except _H5_FAILURES as error:
        raise InvalidModelFileError(f"{path.name} is not a readable Keras HDF5 file ({type(error).__name__})") from None
    return topology, weights, divisor


def _h5_child(group: Any, path: str, where: str) -> Any:
    """``group[path]``, following hard links only, checked on every component of ``path``: a
    soft or external link anywhere on the way (``ext`` in ``ext/kernel``) could lead to another
    object or another file, which an upload must not reach."""
    import h5py  # lazy: only Keras .h5 files need h5py

    node = group
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidModelFileError(f"{where}: object {path[:60]!r} is not a plain path inside the file")
        # The link itself, read without following it: following an external link opens its file.
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            raise InvalidModelFileError(f"{where}: object {path[:60]!r} is missing")
        if not isinstance(link, h5py.HardLink):
            raise InvalidModelFileError(f"{where}: {path[:60]!r} passes through a link ({part[:40]!r}); "
                                        "links are not accepted")
        node = node[part]
    return node


def _h5_weights(group: Any, where: str) -> dict[str, np.ndarray]:
    """Every dataset named by the ``weight_names`` attributes under ``group``.

    Only hard links inside the file and plain datasets are read: HDF5 can point at other
    files (external links, external storage, virtual datasets) or load filter plugins, which
    an upload must not. Bytes are counted at the stored dtype's size and at float32's, the
    larger, before anything is read."""
    import h5py  # lazy: only Keras .h5 files need h5py

    weights: dict[str, np.ndarray] = {}
    total = 0

    def visit(node: Any, depth: int) -> None:
        nonlocal total
        if depth > 6:
            raise InvalidModelFileError(f"{where}: weight groups nested too deep")
        for name in node.attrs.get("weight_names", []):
            name = name.decode() if isinstance(name, bytes) else str(name)
            dataset = _h5_child(node, name, where)
            _check_dataset(dataset, name, where)
            total += dataset.size * max(dataset.dtype.itemsize, 4)
            if total > MAX_WEIGHT_BYTES:
                raise InvalidModelFileError(f"{where}: weights over {MAX_WEIGHT_BYTES:,} bytes")
            weights[name] = np.asarray(dataset[()], np.float32)
        for key in node:
            if isinstance(node.get(key, getlink=True), h5py.HardLink) and isinstance(node[key], h5py.Group):
                visit(node[key], depth + 1)

    visit(group, 0)
    return weights


def _check_dataset(dataset: Any, name: str, where: str) -> None:
    import h5py  # lazy: only Keras .h5 files need h5py

    if not isinstance(dataset, h5py.Dataset) or dataset.external or dataset.is_virtual \
            or dataset.dtype.kind != "f" or dataset.dtype.itemsize > 8 or dataset.ndim > 5:
        raise InvalidModelFileError(f"{where}: weight {name[:60]!r} is not a plain float array")
    plist = dataset.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        if plist.get_filter(index)[0] not in H5_FILTERS:
            raise InvalidModelFileError(f"{where}: weight {name[:60]!r} is stored with an HDF5 filter that is not "
                                        f"accepted (only {', '.join(H5_FILTERS.values())})")


def _preprocessing(input_shape: Any, metadata: dict[str, Any], divisor: float = 1 / TM_SCALE) -> Preprocessing:
    height, width, channels = (int(n) for n in input_shape[1:])
    if channels not in (1, 3):
        raise InvalidModelFileError(f"the model takes {channels} channels; TM models take RGB or grayscale")
    size = metadata.get("imageSize", height)
    if size != height or height != width:
        raise InvalidModelFileError(f"the model takes {height}x{width} images but metadata.json says {size}")
    return Preprocessing(size=(height, width), scale=1 / divisor, offset=TM_OFFSET, crop="center",
                         grayscale=channels == 1)


def _provenance(export: TeachableExport, **extra: Any) -> dict[str, Any]:
    kept = ("tmVersion", "tfjsVersion", "packageName", "packageVersion", "modelName", "timeStamp")
    return {"tool": "Teachable Machine", "export": export.kind,
            **{key: str(export.metadata[key])[:100] for key in kept if key in export.metadata}, **extra}


# --- TFLite -----------------------------------------------------------------------------------

def _import_tflite(export: TeachableExport, out: Path, name: str, overwrite: bool) -> Path:
    file = export.folder / export.metadata["file"]
    if file.stat().st_size > MAX_WEIGHT_BYTES:
        raise InvalidModelFileError(f"{file.name} is over {MAX_WEIGHT_BYTES:,} bytes")
    flatbuffer = file.read_bytes()
    # Checked against the schema, then built and run once in a child process: a file that
    # crashes LiteRT takes down the child, never this process (possibly the app's server).
    details = check_tflite(flatbuffer, file.name)
    shape = details["input"]["shape"]
    if len(shape) != 4 or details["output"]["shape"][-1] != len(export.labels):
        raise InvalidModelFileError(f"{file.name}: input {shape} / output {details['output']['shape']} do not fit "
                                    f"an image classifier with {len(export.labels)} labels")
    preprocessing = _preprocessing([None, *shape[1:]], {})
    info = make_info(name, export.labels, ARCHITECTURE, preprocessing,
                     source=_provenance(export, file=file.name[:MAX_LABEL_CHARS],
                                        input_dtype=details["input"]["dtype"]),
                     runtime={"kind": "tflite-only", "input": details["input"], "output": details["output"]})
    return save_tflite_bundle(flatbuffer, info, out, overwrite=overwrite)
