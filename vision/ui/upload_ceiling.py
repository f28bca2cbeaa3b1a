"""A ceiling on Gradio's upload folder, all visitors together.

Uploads arrive before any event and carry no session, so the queue's per-session and
per-client shares (``vision.ui.fairness``) cannot bound them: the only bound that holds is one
on the folder, kept small by the app's short cache sweep (``delete_cache``). This ASGI
middleware answers an upload 507 while the folder holds more than its ceiling.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from gradio.utils import get_upload_folder
from starlette.responses import JSONResponse

from vision.ui.disk import folder_bytes

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: Gradio's upload folder, all visitors together.
UPLOAD_CAP_BYTES = 2 * 1024**3
#: Seconds between counts of the upload folder (the ceiling is coarse: a few seconds late is fine).
RECOUNT_S = 5.0


class UploadCeiling:
    """ASGI middleware: an upload is refused (507) while Gradio's upload folder holds more than
    ``cap_bytes``; every other request passes through."""

    def __init__(self, app: Any, cap_bytes: int = UPLOAD_CAP_BYTES) -> None:
        self.app, self.cap_bytes = app, cap_bytes
        self._upload_bytes: tuple[float, int] = (0.0, 0)  # (when measured, bytes)
        self._recounting = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/upload")
                and self.full()):
            # Gradio's own errors are {"detail": ...}; its clients show the detail to the visitor.
            refusal = JSONResponse({"detail": "the server holds too many uploads right now; try again in a few "
                                              "minutes"}, status_code=507)
            return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)

    def full(self) -> bool:
        """Whether the upload folder was over its ceiling when last counted. The count runs in a
        worker thread at most every ``RECOUNT_S``: walking the folder on the event loop stalled
        every request the server was handling (it was the largest cost of a classify call under
        load, after the model itself)."""
        measured_at, size = self._upload_bytes
        if not measured_at:  # the first upload waits for the first count: no stale zero to trust
            self._recount()
            return self._upload_bytes[1] > self.cap_bytes
        if time.monotonic() - measured_at > RECOUNT_S and not self._recounting.locked():
            self._upload_bytes = (time.monotonic(), size)  # one recount at a time
            threading.Thread(target=self._recount, daemon=True, name="upload-recount").start()
        return size > self.cap_bytes

    def _recount(self) -> None:
        with self._recounting:
            self._upload_bytes = (time.monotonic(), folder_bytes(Path(get_upload_folder())))
