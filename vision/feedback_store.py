"""Visitors' "wrong answer" reports, kept on disk for the app's owner: bounded, and safe to share.

One report is two files in one folder: ``<id>.jpg`` (the photo, re-encoded at most 512 px on a side,
with no EXIF or other metadata) and ``<id>.json`` (the model's answer and probabilities, the class
the visitor picked, the time, and the model's fingerprint). Ids start with the time in nanoseconds,
so their order is the order they came in. Nothing else is kept: no file name, no path, no address.

Each file is written under a temporary name and renamed into place, the JSON last: a report whose
JSON exists is whole, and a crash leaves at most a stray photo, removed at the next start. The
store holds at most ``FeedbackLimits.max_items`` reports and ``max_bytes`` bytes, dropping the
oldest first; a per-client token bucket (and one for everyone) refuses floods before anything is
decoded. The server is threaded: one lock guards the index and the evictions.

Gradio's ``CSVLogger`` cannot hold this (see ``vision.ui.feedback``): its CSV only grows, so
dropping the oldest means rewriting it; it keeps uploads through the component (file names and
all) and re-reads the whole CSV on every flag. The Gradio side is a ``FlaggingCallback`` over
this store.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from vision.data.images import load_image
from vision.errors import DatasetError, LimitExceededError

#: The visitor's choice when the photo is of none of the model's classes.
NONE_OF_THESE = "none of these"
#: A kept photo's longest side, in pixels.
PHOTO_SIDE = 512
JPEG_QUALITY = 85
#: Probabilities kept per report: the top ones (an ImageNet model has 1,000 classes).
KEPT_PROBABILITIES = 10
#: Where a Space's persistent storage is mounted, when the owner attached some.
SPACE_DATA = Path("/data")
_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")
_TEMP_PREFIX = ".tmp-"
#: A leftover (a temporary file, a photo without its record) is removed at start once this old: a
#: younger one may be another process's write in flight (a private instance on the same folder).
STRAY_AGE_S = 3600.0


@dataclass(frozen=True)
class FeedbackLimits:
    """How much feedback is kept, and how fast one client may send it."""

    max_items: int = 2000
    max_bytes: int = 200 * 1024 * 1024  # photos and records together; a 512 px JPEG is ~30-80 kB
    burst: int = 10  # one client's token bucket: reports sent at once...
    per_minute: float = 6.0  # ...and refilled at this rate
    total_burst: int = 60  # the same for all clients together
    total_per_minute: float = 120.0
    max_clients: int = 10_000  # buckets remembered (the least recently seen are forgotten, full)


@dataclass(frozen=True)
class FeedbackItem:
    """One report, as its JSON holds it."""

    id: str
    time: str  # ISO 8601, UTC
    label: str  # the visitor's: one of the model's classes, or NONE_OF_THESE
    answer: str  # the model's top class ("" when it had none)
    probabilities: dict[str, float] = field(default_factory=dict)  # the top classes, highest first
    unknown: bool = False  # the model said "not sure" (its "unknown" detector)
    model: str = ""  # the bundle's fingerprint
    model_name: str = ""


def feedback_home(env: Mapping[str, str] | None = None, data: Path = SPACE_DATA) -> Path | None:
    """Where feedback is kept across restarts: ``VISION_FEEDBACK_DIR``, else on a Space with
    persistent storage ``/data/feedback``; None when there is no such place (a temporary folder
    is used then, and the owner is told that feedback is lost on restart)."""
    env = os.environ if env is None else env
    chosen = (env.get("VISION_FEEDBACK_DIR") or "").strip()
    if chosen:
        return Path(chosen)
    if env.get("SPACE_ID") and data.is_dir() and os.access(data, os.W_OK | os.X_OK):
        return data / "feedback"
    return None


def encode_photo(pixels: np.ndarray, max_side: int = PHOTO_SIDE) -> bytes:
    """``pixels`` (RGB uint8) as a JPEG at most ``max_side`` on a side, with no metadata: encoded
    from the pixels alone, so no EXIF, GPS, camera or file name can ride along."""
    small = load_image(pixels, max_side=max_side)
    buffer = io.BytesIO()
    Image.fromarray(small).save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


class _Buckets:
    """Token buckets per client, and one for everyone (not thread-safe: the store's lock holds)."""

    def __init__(self, limits: FeedbackLimits) -> None:
        self.limits = limits
        self._clients: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)
        self._total: tuple[float, float] | None = None  # (tokens, when): full until first used

    @staticmethod
    def _refill(state: tuple[float, float], burst: int, per_minute: float, now: float) -> float:
        tokens, when = state
        return min(float(burst), tokens + (now - when) * per_minute / 60.0)

    def take(self, client: str, now: float) -> str | None:
        """Take a token for ``client``; the reason when there is none."""
        limits = self.limits
        mine = self._refill(self._clients.pop(client, (float(limits.burst), now)), limits.burst,
                            limits.per_minute, now)
        total = self._refill(self._total or (float(limits.total_burst), now), limits.total_burst,
                             limits.total_per_minute, now)
        refused = None
        if mine < 1:
            refused = f"you have sent {limits.burst} reports in a short time; wait a minute and send again"
        elif total < 1:
            refused = "many visitors are sending reports right now; wait a minute and send again"
        else:
            mine, total = mine - 1, total - 1
        self._clients[client] = (mine, now)  # most recently seen last
        self._total = (total, now)
        while len(self._clients) > limits.max_clients:
            self._clients.popitem(last=False)
        return refused


class FeedbackStore:
    """Reports in ``root``: bounded, oldest dropped first, safe across threads and restarts.

    Args:
        root: The folder (created if missing). A new store on the same folder finds every whole
            report a previous one wrote.
        limits: Ceilings and rates.
        writable: False to read a store that an app may be writing (the CLI's export): nothing is
            created, cleaned up or dropped.
    """

    def __init__(self, root: str | Path, limits: FeedbackLimits = FeedbackLimits(), writable: bool = True) -> None:
        self.root = Path(root)
        self.limits = limits
        self.writable = writable
        self._lock = threading.Lock()
        self._buckets = _Buckets(limits)
        self._sizes: OrderedDict[str, int] = OrderedDict()  # id -> bytes on disk, oldest first
        if writable:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise DatasetError(f"no feedback folder at {self.root}")
        self._load()

    def _load(self) -> None:
        """Index the whole reports; remove what a crash left half-written."""
        records = self._ids()
        old = time.time() - STRAY_AGE_S
        for path in self.root.iterdir() if self.writable else ():
            stray = path.name.startswith(_TEMP_PREFIX) or (path.suffix == ".jpg" and path.stem not in records)
            try:
                if stray and path.is_file() and path.stat().st_mtime < old:
                    path.unlink()
            except FileNotFoundError:
                pass
        for item_id in records:
            photo, record = self._photo(item_id), self.root / f"{item_id}.json"
            try:
                self._sizes[item_id] = photo.stat().st_size + record.stat().st_size
            except FileNotFoundError:  # a photo lost in a crash, or a report the app just dropped
                if self.writable:
                    record.unlink(missing_ok=True)
        if self.writable:
            with self._lock:
                self._evict()

    @property
    def count(self) -> int:
        return len(self._sizes)

    @property
    def bytes(self) -> int:
        """Bytes on disk of every report (photos and records)."""
        with self._lock:
            return sum(self._sizes.values())

    def admit(self, client: str, now: float | None = None) -> None:
        """Count one report against ``client``'s rate (and everyone's), before any work is done.

        Raises:
            LimitExceededError: the client, or everyone together, sent too many too fast.
        """
        with self._lock:
            refused = self._buckets.take(client, time.monotonic() if now is None else now)
        if refused:
            raise LimitExceededError(refused)

    def add(self, photo: bytes, label: str, answer: str, probabilities: Mapping[str, float],
            unknown: bool = False, model: str = "", model_name: str = "") -> FeedbackItem:
        """Keep one report (``photo`` as ``encode_photo`` made it); returns it. The oldest reports
        go when the count or the bytes are above their ceilings."""
        if not self.writable:
            raise RuntimeError("this feedback store was opened read-only")
        top = sorted(((str(k)[:200], float(v)) for k, v in probabilities.items()), key=lambda kv: -kv[1])
        item = FeedbackItem(id=f"{time.time_ns():020d}-{secrets.token_hex(4)}",
                            time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            label=str(label)[:200], answer=str(answer)[:200],
                            probabilities=dict(top[:KEPT_PROBABILITIES]), unknown=bool(unknown),
                            model=str(model)[:100], model_name=str(model_name)[:200])
        record = json.dumps(asdict(item), ensure_ascii=False).encode()
        size = len(photo) + len(record)
        if size > self.limits.max_bytes:
            raise LimitExceededError("this report is larger than the whole feedback store may be")
        # Written outside the lock (unique names); the JSON last, so a report is whole once it exists.
        _write_atomic(self._photo(item.id), photo)
        _write_atomic(self.root / f"{item.id}.json", record)
        with self._lock:
            newest = next(reversed(self._sizes), "")
            self._sizes[item.id] = size
            if item.id < newest:  # threads may finish out of order: keep the index oldest first
                self._sizes = OrderedDict(sorted(self._sizes.items()))
            self._evict()
        return item

    def _evict(self) -> None:
        """Drop the oldest reports until both ceilings hold (the lock is held)."""
        total = sum(self._sizes.values())
        while self._sizes and (len(self._sizes) > self.limits.max_items or total > self.limits.max_bytes):
            item_id, size = self._sizes.popitem(last=False)
            total -= size
            (self.root / f"{item_id}.json").unlink(missing_ok=True)  # the record first: never a half report
            self._photo(item_id).unlink(missing_ok=True)

    def _ids(self) -> list[str]:
        """The ids of the whole reports on disk, oldest first."""
        return sorted(p.stem for p in self.root.glob("*.json") if _ID.match(p.stem))

    def items(self, model: str | None = None) -> list[FeedbackItem]:
        """Every report (only ``model``'s, if given), newest first. Read from the folder, not this
        object's index: another process on the same folder (the owner's private instance, the
        CLI) sees what the public app kept since it started."""
        found = []
        for item_id in reversed(self._ids()):
            item = self.get(item_id)
            if item is not None and (model is None or item.model == model):
                found.append(item)
        return found

    def get(self, item_id: str) -> FeedbackItem | None:
        """The report ``item_id``, or None (an unknown or malformed id, or one dropped since)."""
        if not _ID.match(item_id or ""):  # an id, never a path
            return None
        try:
            data = json.loads((self.root / f"{item_id}.json").read_text(encoding="utf-8"))
            return FeedbackItem(**data)
        except (OSError, ValueError, TypeError):
            return None

    def photo(self, item_id: str) -> Path:
        """The photo of report ``item_id``.

        Raises:
            DatasetError: no such report (it may have been dropped as the store filled).
        """
        if self.get(item_id) is None or not self._photo(item_id).is_file():
            raise DatasetError("that report is no longer kept (the oldest are dropped as new ones come)")
        return self._photo(item_id)

    def _photo(self, item_id: str) -> Path:
        return self.root / f"{item_id}.jpg"

    def export(self, out: str | Path, model: str | None = None, include_none: bool = False) -> dict[str, int]:
        """Write the reports' photos into ``out/<visitor's label>/<id>.jpg`` (a class-folder dataset);
        returns photos per class. "None of these" reports are left out unless ``include_none``."""
        out = Path(out)
        written: dict[str, int] = {}
        for item in reversed(self.items(model)):
            if item.label == NONE_OF_THESE and not include_none:
                continue
            folder = out / folder_name(item.label)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(self._photo(item.id), folder / f"{item.id}.jpg")
            except FileNotFoundError:
                continue  # dropped while we copied
            written[item.label] = written.get(item.label, 0) + 1
        return written


def folder_name(label: str) -> str:
    """A class label as one folder name (never a path: separators and dot-names are replaced)."""
    name = re.sub(r"[/\\\x00-\x1f]", "_", label).strip()
    return name if name.strip(".") else "_" + name


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
