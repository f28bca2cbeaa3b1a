"""Read a legacy-format (pre-1.6) PyTorch state dict without torch, and without trusting it.

A ``.pth`` file is pickles: anything may be inside. This reader checks the file's sha256
first, then unpickles with an allow-list of exactly the globals a state dict of tensors
needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the float/long
storage types, all replaced by inert stand-ins here); any other global is refused. Tensor
data is read as raw little-endian numbers into numpy.

Layout of the legacy format: pickled magic number, protocol version and system info; the
pickled object, whose tensors name their storage by persistent id
``('storage', <type>, key, location, numel, view)``; a pickled list of storage keys; then per
key an int64 element count followed by the raw data.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vision.errors import VisionError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8"), "DoubleStorage": np.dtype("<f8"),
           "IntStorage": np.dtype("<i4"), "HalfStorage": np.dtype("<f2")}


class CheckpointError(VisionError, ValueError):
    """A checkpoint is missing, altered, or holds something other than tensors."""


@dataclass(frozen=True)
class _TensorRef:
    storage_type: str
    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: tuple[str, str], offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage[0], storage[1], int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Builds only dicts, numbers, strings and tensor references."""

    _ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
                ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _DTYPES:
            return name  # a storage type: only its name is used
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(f"the checkpoint asks for {module}.{name}, which a state dict never needs; "
                                  "refusing to load it") from None

    def persistent_load(self, pid: Any) -> tuple[str, str]:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] in _DTYPES):
            raise CheckpointError("the checkpoint refers to something other than a tensor storage")
        return pid[1], str(pid[2])  # (type name, key)


def load_legacy_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, np.ndarray]:
    """Read a legacy-format PyTorch state dict as ``{name: float32/int64 array}``.

    Args:
        path: the ``.pth`` file.
        sha256: when given, the file must have exactly this digest (checked before unpickling).

    Raises:
        CheckpointError: missing file, wrong digest, a forbidden global, or a malformed layout.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise CheckpointError(f"checkpoint '{path.name}' has sha256 {digest[:12]}…, expected {sha256[:12]}…: "
                                  "the file was altered or is another version; reinstall its package")
    with path.open("rb") as handle:
        try:
            return _read(handle)
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as error:
            raise CheckpointError(f"checkpoint '{path.name}' is not a legacy PyTorch state dict ({error})") from None


def _read(handle: BinaryIO) -> dict[str, np.ndarray]:
    def unpickle() -> Any:
        return _StateDictUnpickler(handle).load()

    if unpickle() != LEGACY_MAGIC:
        raise CheckpointError("not a legacy-format PyTorch file (wrong magic number)")
    unpickle()  # protocol version
    unpickle()  # system info (endianness, type sizes)
    state = unpickle()
    keys = unpickle()
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise CheckpointError("the checkpoint does not hold a state dict")
    dtypes = {ref.key: _DTYPES[ref.storage_type] for ref in state.values() if isinstance(ref, _TensorRef)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        count = int(np.frombuffer(handle.read(8), "<i8")[0])
        dtype = dtypes.get(str(key), np.dtype("<f4"))
        data = handle.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise CheckpointError("the checkpoint's tensor data ends early")
        storages[str(key)] = np.frombuffer(data, dtype)
    tensors = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            continue
        storage = storages[ref.key]
        itemsize = storage.dtype.itemsize
        array = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.size,
                                                strides=tuple(s * itemsize for s in ref.stride))
        tensors[name] = np.array(array)  # a copy: owns its memory, writeable
    return tensors

