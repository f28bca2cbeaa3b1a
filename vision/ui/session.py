"""One object per browser session: its active model, its own models, samples, exports,
running job and live-view timing. Sessions are created, looked up and removed here only.

A session's files live under ``<state_dir>/sessions/<random id>``; the id is not the
Gradio session hash, so nothing served or shown reveals one session to another. A session
is removed when its tab closes (Gradio's unload), when it has been idle for
``Limits.session_idle_s``, and when the app stops.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vision.data.samples import SampleCollection
from vision.errors import LimitExceededError
from vision.ui.cache import forget
from vision.ui.config import AppConfig

log = logging.getLogger(__name__)
DEFAULT_KEY = "default"


@dataclass
class Session:
    """What one visitor has: never shared with another session."""

    root: Path
    active: str = DEFAULT_KEY  # a model key (see ``vision.ui.catalog``)
    models: dict[str, Path] = field(default_factory=dict)  # "mine/<name>" -> bundle folder
    exports: dict[str, Path] = field(default_factory=dict)  # unguessable id -> export folder
    job: Any = None  # the running ``TrainingJob``, so "Cancel" can reach it
    frame_times: deque = field(default_factory=lambda: deque(maxlen=30))
    mistakes: Any = None  # the last training's ``vision.ui.review.Mistakes``, for its filter
    last_seen: float = field(default_factory=time.monotonic)

    @property
    def samples(self) -> SampleCollection:
        """Webcam snapshots and uploads per class (the folder appears with the first sample)."""
        return SampleCollection(self.root / "samples")

    def disk_bytes(self) -> int:
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def check_disk(self, limit_mb: int) -> None:
        used = self.disk_bytes() / 1e6
        if used > limit_mb:
            raise LimitExceededError(f"this session uses {used:.0f} MB of its {limit_mb} MB: delete one of your "
                                     "models or clear your classes first")


class SessionRegistry:
    """Sessions by Gradio session hash, with their files under ``config.state_dir``."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.root = config.state_dir / "sessions"
        self.exports_root = config.state_dir / "exports"
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, request: Any) -> Session:
        """The caller's session (created on first use); idle sessions are swept on the way."""
        key = getattr(request, "session_hash", None) or "anonymous"
        self.sweep()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = Session(root=self.root / secrets.token_hex(8))
            session.last_seen = time.monotonic()
            return session

    def close(self, request: Any) -> None:
        """Remove the caller's session and everything it made (Gradio's unload)."""
        key = getattr(request, "session_hash", None) or "anonymous"
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            self._remove(session)

    def sweep(self, now: float | None = None) -> int:
        """Remove sessions idle for longer than the limit (never one that is training)."""
        now = time.monotonic() if now is None else now
        cutoff = now - self.config.limits.session_idle_s
        with self._lock:
            idle = [k for k, s in self._sessions.items() if s.last_seen < cutoff and s.job is None]
            removed = [self._sessions.pop(k) for k in idle]
        for session in removed:
            self._remove(session)
        return len(removed)

    def close_all(self) -> None:
        """Remove every session and every export (the app is stopping)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            self._remove(session)
        shutil.rmtree(self.config.state_dir, ignore_errors=True)

    def users_of(self, key: str, besides: Session | None = None) -> int:
        """How many other sessions have the model ``key`` active."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.active == key and s is not besides)

    def export_folder(self, export_id: str) -> Path | None:
        """The folder of a live export, for serving it; None once its session is gone."""
        with self._lock:
            for session in self._sessions.values():
                if export_id in session.exports:
                    return session.exports[export_id]
        return None

    def new_export(self, session: Session) -> tuple[str, Path]:
        """A fresh, unguessable export id and the folder it will be written to."""
        limit = self.config.limits.exports_per_session
        if len(session.exports) >= limit:
            oldest = next(iter(session.exports))  # keep the newest: drop the oldest
            shutil.rmtree(session.exports.pop(oldest), ignore_errors=True)
        export_id = secrets.token_urlsafe(18)  # 144 bits
        return export_id, self.exports_root / export_id

    def _remove(self, session: Session) -> None:
        if session.job is not None:
            session.job.cancel()
        for folder in session.models.values():
            forget(folder)
        for folder in session.exports.values():
            shutil.rmtree(folder, ignore_errors=True)
            for archive in folder.parent.glob(folder.name + ".*"):
                archive.unlink(missing_ok=True)
        shutil.rmtree(session.root, ignore_errors=True)
        log.info("removed a session (%d models, %d exports)", len(session.models), len(session.exports))
