"""Fair use of the shared queue and upload folder: one visitor cannot take them from the others.

Gradio's queue has one size limit for everybody, so a single session that joins the same
expensive event 65 times fills it and every other visitor gets "Queue is full". Gradio has
no per-session limit, so this ASGI middleware sits in front of its app and answers a
``/queue/join`` itself (429, with the reason) when the session already holds its share:
``QueueShares.per_group[concurrency_id]`` events of one kind, ``per_session`` in all,
counting events that wait and events that run. Joins are checked one at a time, so a burst
of parallel joins cannot all slip under the limit together.

It also refuses an upload when Gradio's upload folder holds more than ``upload_cap_bytes``:
uploads arrive before any event and carry no session, so the only bound that holds for them
is one on the folder, kept small by the app's short cache sweep (``delete_cache``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from gradio.utils import get_upload_folder

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: A join body is a few kB of JSON (file inputs are references to uploads, not bytes).
MAX_JOIN_BODY = 1024 * 1024
#: Seconds between counts of the upload folder (the ceiling is coarse: a few seconds late is fine).
RECOUNT_S = 5.0


@dataclass(frozen=True)
class QueueShares:
    """What one session may hold in the queue at once (waiting and running together)."""

    per_group: Mapping[str, int] = field(default_factory=lambda: {"train": 1, "export": 2, "explain": 3, "hub": 2})
    per_session: int = 8
    upload_cap_bytes: int = 2 * 1024**3  # Gradio's upload folder, all visitors together


class FairQueue:
    """ASGI middleware: per-session shares of Gradio's queue, and a ceiling on uploads.

    ``blocks`` is the app's ``gr.Blocks``: the events already in its queue are the ones Gradio
    keeps in ``Queue.event_ids_to_events`` until they end, and an event's kind is its
    function's ``concurrency_id`` (see ``vision.ui.layout``).
    """

    def __init__(self, app: Any, blocks: Any, shares: QueueShares) -> None:
        self.app, self.blocks, self.shares = app, blocks, shares
        self._join_lock = asyncio.Lock()
        self._upload_bytes: tuple[float, int] = (0.0, 0)  # (when measured, bytes)
        self._recounting = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        if path.endswith("/queue/join"):
            return await self._join(scope, receive, send)
        if path.endswith("/upload") and self._uploads_full():
            return await _refuse(send, 507, "the server holds too many uploads right now; try again in a few minutes")
        return await self.app(scope, receive, send)

    async def _join(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_JOIN_BODY)
        if body is None:
            return await _refuse(send, 413, "request too large")
        try:
            payload = json.loads(body)
            session, fn_index = payload.get("session_hash"), payload.get("fn_index")
        except (ValueError, AttributeError):
            session = fn_index = None  # Gradio answers malformed joins itself
        async with self._join_lock:  # count and join as one step
            reason = self.refusal(session, fn_index) if session else None
            if reason:
                log.info("refused a queue join: %s", reason)
                return await _refuse(send, 429, reason)
            await self.app(scope, _replay(body), send)

    def refusal(self, session: str, fn_index: Any) -> str | None:
        """Why ``session`` may not join event ``fn_index`` now, or None."""
        function = self.blocks.fns.get(fn_index) if isinstance(fn_index, int) else None
        held = Counter(event.fn.concurrency_id for event in list(self.blocks._queue.event_ids_to_events.values())
                       if event.session_hash == session)
        # Events ``gr.render`` makes (the Train view's class cards) live in the session's own
        # state, not in ``blocks.fns``: their group is unknown here, but the session's total
        # share still applies to them. Gradio refuses an index that is nobody's itself.
        group = function.concurrency_id if function is not None else None
        limit = self.shares.per_group.get(group)
        if limit is not None and held[group] >= limit:
            what = "a training" if group == "train" else f"{held[group]} {group} requests"
            return f"this session already has {what} waiting or running; wait for it to finish (or cancel it)"
        if sum(held.values()) >= self.shares.per_session:
            return (f"this session already has {sum(held.values())} requests waiting or running; "
                    "wait for them to finish")
        return None

    def _uploads_full(self) -> bool:
        """Whether the upload folder was over its ceiling when last counted. The count runs in a
        worker thread at most every ``RECOUNT_S``: walking the folder on the event loop stalled
        every request the server was handling (it was the largest cost of a classify call under
        load, after the model itself)."""
        measured_at, size = self._upload_bytes
        if not measured_at:  # the first upload waits for the first count: no stale zero to trust
            self._recount()
            return self._upload_bytes[1] > self.shares.upload_cap_bytes
        if time.monotonic() - measured_at > RECOUNT_S and not self._recounting.locked():
            self._upload_bytes = (time.monotonic(), size)  # one recount at a time
            threading.Thread(target=self._recount, daemon=True, name="upload-recount").start()
        return size > self.shares.upload_cap_bytes

    def _recount(self) -> None:
        with self._recounting:
            self._upload_bytes = (time.monotonic(), folder_bytes(Path(get_upload_folder())))


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (0 when it is missing), links not followed."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:  # gone meanwhile (Gradio's cache sweep)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the already-read body to the app behind, once."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _refuse(send: Send, status: int, reason: str) -> None:
    # Gradio's own join errors are {"detail": ...}; its clients show the detail to the visitor.
    content = json.dumps({"detail": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})
