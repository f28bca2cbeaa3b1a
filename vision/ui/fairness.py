"""Fair shares of the shared queue: one visitor cannot take it from the others.

Gradio's queue has one size limit for everybody (64 events), so a single visitor that joins the
same expensive event 65 times fills it and every other visitor gets "Queue is full". Gradio has
no per-visitor limit, so this ASGI middleware sits in front of its app and answers a request
that would add an event (429, with the reason) when its session, or its client, already holds
its share, counting events that wait and events that run:

- per session: ``QueueShares.per_group[concurrency_id]`` events of one kind, ``per_session`` in all;
- per client (``vision.serve.client``: one address, whatever session hashes it makes up, since a
  session hash is whatever the caller sends): ``per_client_group`` of one kind, ``per_client`` in all.

Every way into the queue is counted: ``/queue/join`` (``fn_index``), and Gradio's call-then-stream
routes ``/call/<api_name>`` and ``/call/v2/<api_name>``. A body is read the way Gradio reads it
(``json.loads``, then Gradio's own pydantic models), so ``"3"``, ``3.0`` or ``true`` name the event
Gradio will run, and a body Gradio refuses is passed on for Gradio to refuse. An entry counts
from its check until Gradio has answered it (by then its event is in the queue), so a burst of
parallel requests cannot all slip under the limit together, and no entry waits for another's.

Uploads come before any event and carry no session: their bound is ``vision.ui.upload_ceiling``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from gradio.data_classes import PredictBody, SimplePredictBody
from pydantic import ValidationError

from vision.serve.bodies import BodyError, BodyPace, read_body
from vision.serve.client import client_id

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: A join body is a few kB of JSON (file inputs are references to uploads, not bytes).
MAX_JOIN_BODY = 1024 * 1024
#: Gradio's call-then-stream routes (``routes.py``): ``/call/v2`` takes named inputs and no session.
_CALL = re.compile(r"/call/(?P<v2>v2/)?(?P<api_name>[^/]+)$")


@dataclass(frozen=True)
class QueueShares:
    """What one session, and one client, may hold in the queue at once (waiting and running)."""

    per_group: Mapping[str, int] = field(default_factory=lambda: {"train": 1, "export": 2, "explain": 3, "hub": 2})
    per_session: int = 8
    # A client may be a household or an office behind one address: twice a session's share,
    # and well under the queue's 64, so four flooding addresses still leave room for others.
    per_client_group: Mapping[str, int] = field(
        default_factory=lambda: {"train": 2, "export": 4, "explain": 6, "hub": 4})
    per_client: int = 12


@dataclass(frozen=True)
class Entry:
    """What a request into the queue asks for: who, and which event (None: unknown here)."""

    client: str
    session: str | None
    function: Any | None


class FairQueue:
    """ASGI middleware: per-session and per-client shares of Gradio's queue.

    ``blocks`` is the app's ``gr.Blocks``: the events already in its queue are the ones Gradio
    keeps in ``Queue.event_ids_to_events`` until they end, each with its request (hence its
    client), and an event's kind is its function's ``concurrency_id`` (see ``vision.ui.layout``).
    Events under the path ``exempt`` (the owner's workbench, another Blocks with its own queue) are
    not counted, only capped in size.
    """

    def __init__(self, app: Any, blocks: Any, shares: QueueShares, pace: BodyPace | None = None,
                 exempt: str | None = None) -> None:
        self.app, self.blocks, self.shares, self.pace = app, blocks, shares, pace or BodyPace()
        self.exempt = exempt
        self._entering: list[Entry] = []  # checked, and not yet answered by Gradio

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "/gradio_api/mcp" in scope["path"]:
            scope = _forwarded_as(scope, client_id(scope))
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        if path.endswith("/queue/join"):
            return await self._enter(scope, receive, send, None)
        call = _CALL.search(path)
        if call:
            return await self._enter(scope, receive, send, call)
        return await self.app(scope, receive, send)

    async def _enter(self, scope: dict[str, Any], receive: Receive, send: Send, call: re.Match | None) -> None:
        try:
            body = bytes(await read_body(receive, MAX_JOIN_BODY, self.pace, too_large="request too large"))
        except BodyError as error:
            return await _refuse(send, error.status, str(error), close=True)
        # An exempt path's body is capped too (FastAPI reads a body before its route's login check).
        exempt = self.exempt is not None and scope["path"].startswith(self.exempt)
        entry = None if exempt else self.entry(client_id(scope), body, call)
        if entry is None:  # exempt, or Gradio refuses it without making an event
            return await self.app(scope, _replay(body), send)
        # No await between the check and the append: on the event loop the two are one step.
        reason = self.refusal(entry)
        if reason:
            log.info("refused a queue entry: %s", reason)
            return await _refuse(send, 429, reason)
        self._entering.append(entry)
        answered = False

        def leave() -> None:
            nonlocal answered
            if not answered:
                answered = True
                self._entering.remove(entry)

        async def send_then_leave(message: dict[str, Any]) -> None:
            # Gradio answers once the event is in its queue (or refused): from here on the
            # queue counts it, so it stops counting as entering.
            if message["type"] == "http.response.start":
                leave()
            await send(message)

        try:
            await self.app(scope, _replay(body), send_then_leave)
        finally:
            leave()

    def entry(self, client: str, body: bytes, call: re.Match | None) -> Entry | None:
        """What ``body`` asks for, read as Gradio reads it; None when Gradio will refuse it itself
        (so no event is made)."""
        try:
            payload = json.loads(body)
            if call is None:  # /queue/join: Gradio's PredictBody coerces fn_index ("3", 3.0, true)
                parsed = PredictBody.model_validate(payload)
                function = None if parsed.fn_index is None else self.blocks.fns.get(parsed.fn_index)
                return Entry(client, parsed.session_hash, function)
            # /call/<api_name>: the first function of that name, as ``route_utils.get_fn`` finds it;
            # /call/v2 builds a body without a session hash, so Gradio gives the event a fresh one.
            session = None if call["v2"] else SimplePredictBody.model_validate(payload).session_hash
            function = next((fn for fn in self.blocks.fns.values() if fn.api_name == call["api_name"]), None)
            return Entry(client, session, function)
        except (ValueError, RecursionError, ValidationError):  # not JSON, too deep, not Gradio's shape
            return None

    def refusal(self, entry: Entry) -> str | None:
        """Why ``entry`` may not join the queue now, or None."""
        # Events ``gr.render`` makes (the Train view's class cards) live in the session's own
        # state, not in ``blocks.fns``: their group is unknown here, but the total shares still
        # apply to them. Gradio refuses an index that is nobody's itself.
        held = [(event.session_hash, _client_of(event), event.fn.concurrency_id)
                for event in list(self.blocks._queue.event_ids_to_events.values())]
        held += [(other.session, other.client, _group(other.function)) for other in self._entering]
        group = _group(entry.function)
        if entry.session is not None:
            mine = Counter(kind for session, _, kind in held if session == entry.session)
            reason = _over(mine, group, self.shares.per_group, self.shares.per_session, "this session")
            if reason:
                return reason
        mine = Counter(kind for _, client, kind in held if client == entry.client)
        return _over(mine, group, self.shares.per_client_group, self.shares.per_client,
                     "this address (all its sessions together)")


def _over(held: Counter, group: str | None, per_group: Mapping[str, int], total: int, who: str) -> str | None:
    """Why one more event of ``group`` is over ``who``'s share when it ``held`` these, or None."""
    limit = per_group.get(group) if group is not None else None
    if limit is not None and held[group] >= limit:
        what = ("a training" if held[group] == 1 else f"{held[group]} trainings") if group == "train" \
            else f"{held[group]} {group} requests"
        wait = "wait for it to finish (or cancel it)" if held[group] == 1 else "wait for one to finish"
        return f"{who} already has {what} waiting or running; {wait}"
    if sum(held.values()) >= total:
        return f"{who} already has {sum(held.values())} requests waiting or running; wait for them to finish"
    return None


def _group(function: Any | None) -> str | None:
    return function.concurrency_id if function is not None else None


def _forwarded_as(scope: dict[str, Any], client: str) -> dict[str, Any]:
    """``scope`` with ``client`` as its one ``X-Forwarded-For`` hop. Gradio runs an MCP tool call by
    joining its own queue from 127.0.0.1 with the caller's headers: left as they were, a forged
    ``X-Forwarded-For`` would be believed there (the loopback hop is a trusted proxy), so the hop is
    the identity already resolved here, and the tool's event counts against the caller's address."""
    headers = [(name, value) for name, value in scope.get("headers", ()) if name != b"x-forwarded-for"]
    return {**scope, "headers": [*headers, (b"x-forwarded-for", client.encode("latin-1"))]}


def _client_of(event: Any) -> str | None:
    request = getattr(event, "request", None)
    return client_id(request.scope) if request is not None else None


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


async def _refuse(send: Send, status: int, reason: str, close: bool = False) -> None:
    # Gradio's own join errors are {"detail": ...}; its clients show the detail to the visitor.
    content = json.dumps({"detail": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    if close:  # the body was not read to its end: uvicorn closes the socket rather than read on
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
