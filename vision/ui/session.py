"""One object per browser session: its active model, its own models, samples, exports,
running job and live-view timing. Sessions are created, looked up and removed here only.

A session's files live under ``<state_dir>/sessions/<random id>``; the id is not the
Gradio session hash, so nothing served or shown reveals one session to another. A session
is removed when its tab closes (Gradio's unload), when it has been idle for
``Limits.session_idle_s``, and when the app stops.

In public mode every request must carry Gradio's session hash: a caller without one (a
direct REST call) is refused rather than pooled with every other such caller into one shared
session. In private mode there is one user, the owner, and such calls share the owner's.
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

from gradio.utils import get_upload_folder

from vision.data.samples import SampleCollection
from vision.errors import AccessDeniedError, LimitExceededError
from vision.ui.cache import forget
from vision.ui.config import AppConfig
from vision.ui.disk import folder_bytes

log = logging.getLogger(__name__)
DEFAULT_KEY = "default"
OWNER_KEY = "owner"  # private mode: calls without a session hash are the owner's
#: How long removing a session waits for its training to stop before deleting its files.
STOP_TIMEOUT_S = 60.0


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
    def training(self) -> bool:
        """Whether this session's training thread still runs (even if nobody watches it)."""
        return self.job is not None and self.job.running

    @property
    def samples(self) -> SampleCollection:
        """Webcam snapshots and uploads per class (the folder appears with the first sample)."""
        return SampleCollection(self.root / "samples")

    def disk_bytes(self) -> int:
        return folder_bytes(self.root)

    def remaining_bytes(self, limit_mb: int) -> int:
        """Bytes this session may still write under its disk quota."""
        return max(0, int(limit_mb * 1e6) - self.disk_bytes())

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
        """The caller's session (created on first use); idle sessions are swept on the way.

        Raises:
            AccessDeniedError: the request carries no session hash.
        """
        key = self._key(request)
        if key is None:
            raise AccessDeniedError("this request carries no session: call the app through its queue (the page, "
                                    "gradio_client or /gradio_api/call/...), which gives each caller its own")
        self.sweep()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = Session(root=self.root / secrets.token_hex(8))
            session.last_seen = time.monotonic()
            return session

    def close(self, request: Any) -> None:
        """Remove the caller's session and everything it made (Gradio's unload)."""
        key = self._key(request)
        with self._lock:
            session = self._sessions.pop(key, None) if key else None
        if session is not None:
            self._remove(session)

    def find(self, request: Any) -> Session | None:
        """The caller's session if it has one; never creates one."""
        key = self._key(request)
        with self._lock:
            return self._sessions.get(key) if key else None

    def _key(self, request: Any) -> str | None:
        key = getattr(request, "session_hash", None)
        return key or (None if self.config.public else OWNER_KEY)

    def sweep(self, now: float | None = None) -> int:
        """Remove sessions idle for longer than the limit (never one that is training)."""
        now = time.monotonic() if now is None else now
        cutoff = now - self.config.limits.session_idle_s
        with self._lock:
            idle = [k for k, s in self._sessions.items() if s.last_seen < cutoff and not s.training]
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
        while len(session.exports) >= limit:
            oldest = next(iter(session.exports))  # keep the newest: drop the oldest, zip and all
            self._remove_export(oldest, session.exports.pop(oldest))
        export_id = secrets.token_urlsafe(18)  # 144 bits
        return export_id, self.exports_root / export_id

    @staticmethod
    def archive_folder(export_id: str) -> Path:
        """Where an export's .zip is written: inside Gradio's cache, so Gradio serves it in place
        instead of keeping a copy of its own that would outlive the session."""
        return Path(get_upload_folder()) / f"vision-export-{export_id}"

    def _remove_export(self, export_id: str, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.archive_folder(export_id), ignore_errors=True)

    def _remove(self, session: Session) -> None:
        if session.job is not None:
            session.job.cancel()
            # A training still running would save its model into the folder removed below.
            if not session.job.join(STOP_TIMEOUT_S):
                log.warning("a removed session's training did not stop within %.0f s", STOP_TIMEOUT_S)
        for folder in session.models.values():
            forget(folder)
        for export_id, folder in session.exports.items():
            self._remove_export(export_id, folder)
        shutil.rmtree(session.root, ignore_errors=True)
        log.info("removed a session (%d models, %d exports)", len(session.models), len(session.exports))
