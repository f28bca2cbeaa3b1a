"""Clients that flood or stall the app, for the tests and for ``bench/bench_load.py``.

Each one speaks plain HTTP from a chosen source address: every address in 127.0.0.0/8 is this
machine on Linux, so ``source_ip="127.0.0.2"`` is a second client to an app listening on
127.0.0.1. uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 only (``FORWARDED_ALLOW_IPS``), so
from any other loopback address the app sees the socket's own address, as it sees a visitor's.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import selectors
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

API = "/gradio_api"
CHUNK = 1024 * 1024


def _where(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def connect(url: str, source_ip: str | None = None, timeout: float = 30) -> http.client.HTTPConnection:
    """An HTTP connection to the app at ``url`` from ``source_ip`` (None: the system's choice)."""
    host, port = _where(url)
    return http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source_ip, 0) if source_ip else None)


def post_json(url: str, path: str, body: Any, source_ip: str | None = None,
              headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str]:
    """POST ``body`` as JSON to ``path``: the status and the answer's text."""
    connection = connect(url, source_ip, timeout)
    try:
        connection.request("POST", path, json.dumps(body).encode(),
                           {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def upload(url: str, path: Path, source_ip: str | None = None) -> dict[str, Any]:
    """Upload ``path`` as the browser does; the file reference a queue join's data takes."""
    boundary = uuid.uuid4().hex
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: {kind}\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    connection = connect(url, source_ip)
    try:
        connection.request("POST", f"{API}/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        text = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"upload refused: {response.status} {text[:200]}")
        return {"path": json.loads(text)[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
    finally:
        connection.close()


@dataclass
class Flood:
    """What a flood got: how many answers of each status, the refusals' texts, and its duration."""

    statuses: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def accepted(self) -> int:
        return self.statuses[200]


def _flood(url: str, requests: list[tuple[str, Any]], source_ip: str | None, threads: int) -> Flood:
    flood, lock = Flood(), threading.Lock()

    def send(request: tuple[str, Any]) -> None:
        try:
            status, text = post_json(url, *request, source_ip=source_ip)
        except OSError as error:
            status, text = 0, type(error).__name__
        with lock:
            flood.statuses[status] += 1
            if status != 200:
                try:
                    text = json.loads(text).get("detail", text)
                except (ValueError, AttributeError):
                    pass
                flood.refusals[str(text)[:200]] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, requests))
    flood.seconds = time.perf_counter() - started
    return flood


def fresh_hash_flood(url: str, n: int, *, fn_index: Any = None, api_name: str | None = None, data: list | None = None,
                     source_ip: str | None = None, threads: int = 16) -> Flood:
    """``n`` queue entries, each from a session hash made up for it, as a flooder would send them.

    With ``fn_index`` (sent as given: ``3``, ``"3"``, ``3.0``...) each is a ``/queue/join``; with
    ``api_name`` a ``/call/<api_name>`` without a session hash (Gradio makes a fresh one per call).
    ``data`` is the event's inputs (Gradio checks them only when the event runs).
    """
    if (fn_index is None) == (api_name is None):
        raise ValueError("give fn_index or api_name")
    data = data or []
    if fn_index is not None:
        requests = [(f"{API}/queue/join", {"data": data, "fn_index": fn_index, "session_hash": uuid.uuid4().hex[:11],
                                           "event_data": None, "trigger_id": None}) for _ in range(n)]
    else:
        requests = [(f"{API}/call/{api_name}", {"data": data}) for _ in range(n)]
    return _flood(url, requests, source_ip, threads)


def call_route_flood(url: str, api_name: str, n: int, session: str | None = None, *,
                     data: list | dict | None = None, v2: bool = False, source_ip: str | None = None,
                     threads: int = 16) -> Flood:
    """``n`` calls of Gradio's call-then-stream route ``POST /call/<api_name>``, all with the
    session hash ``session`` (None: none sent). With ``v2``, ``/call/v2/<api_name>``, whose body
    names its inputs (``data`` a dict) and whose events never carry the caller's session."""
    if v2:
        body: dict[str, Any] = dict(data or {})
    else:
        body = {"data": list(data or [])}
        if session is not None:
            body["session_hash"] = session
    path = f"{API}/call/{'v2/' if v2 else ''}{api_name}"
    return _flood(url, [(path, body)] * n, source_ip, threads)


@dataclass
class Sent:
    """One big body: the answer's status (0: none came), what was sent, and how long it all took."""

    status: int
    sent: int
    seconds: float
    error: str = ""


def _big_body_parts(size: int) -> tuple[bytes, bytes, int]:
    """The JSON around a ``{"b64": ...}`` of ``size`` bytes in all: prefix, suffix, base64 length."""
    prefix, suffix = b'{"instances": [{"b64": "', b'"}]}'
    length = max(0, size - len(prefix) - len(suffix)) // 4 * 4
    return prefix, suffix, length


def send_big_body(url: str, size: int, *, model: str = "default", source_ip: str | None = None,
                  timeout: float = 120) -> Sent:
    """POST a TF Serving :predict body of about ``size`` bytes (base64 of zero bytes: not an
    image), as fast as the server takes it; reads the answer even when it came early."""
    prefix, suffix, length = _big_body_parts(size)
    host, port = _where(url)
    started, sent, error = time.perf_counter(), 0, ""
    with socket.create_connection((host, port), timeout=timeout,
                                  source_address=(source_ip, 0) if source_ip else None) as sock:
        head = (f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(prefix) + length + len(suffix)}\r\n\r\n").encode()
        try:
            sock.sendall(head + prefix)
            filler = b"A" * CHUNK
            while sent < length:
                sent += sock.send(filler[:min(CHUNK, length - sent)])
            sock.sendall(suffix)
        except OSError as failure:  # the server answered and closed before the body ended
            error = type(failure).__name__
        status = _read_status(sock)
    return Sent(status, sent, time.perf_counter() - started, error)


def chunked_body(url: str, total: int, *, model: str = "default", source_ip: str | None = None,
                 timeout: float = 60) -> Sent:
    """POST a :predict body of up to ``total`` bytes in chunked encoding (no ``Content-Length``:
    only counting as it streams can stop it), stopping as soon as the server answers."""
    host, port = _where(url)
    started, sent, error = time.perf_counter(), 0, ""
    with socket.create_connection((host, port), timeout=timeout,
                                  source_address=(source_ip, 0) if source_ip else None) as sock:
        sock.sendall((f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {host}\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        piece = b"A" * (64 * 1024)
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        watch = selectors.DefaultSelector()
        watch.register(sock, selectors.EVENT_READ)
        try:
            while sent < total and not watch.select(timeout=0):  # stop once an answer is waiting
                sock.sendall(frame)
                sent += len(piece)
            if sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except OSError as failure:
            error = type(failure).__name__
        finally:
            watch.close()
        status = _read_status(sock)
    return Sent(status, sent, time.perf_counter() - started, error)


def _read_status(sock: socket.socket) -> int:
    try:
        first = sock.recv(65536)
    except OSError:
        return 0
    parts = first.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def rest_big_senders(url: str, n_senders: int, size_bytes: int, *, duration_s: float | None = None,
                     model: str = "default", source_ip: str | None = None) -> list[Sent]:
    """``n_senders`` threads each sending :predict bodies of ``size_bytes``: one each, or back to
    back for ``duration_s``. Every body's ``Sent``, in the order they ended."""
    results: list[Sent] = []
    lock = threading.Lock()
    deadline = None if duration_s is None else time.monotonic() + duration_s

    def sender() -> None:
        while True:
            result = send_big_body(url, size_bytes, model=model, source_ip=source_ip)
            with lock:
                results.append(result)
            if deadline is None or time.monotonic() > deadline:
                return

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(n_senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@dataclass
class Stalls:
    """What became of stalled bodies: per connection, the status the server answered (0: none)
    and the seconds from opening until the server closed it (None: still open at the end)."""

    statuses: list[int]
    closed_after: list[float | None]

    @property
    def still_open(self) -> int:
        return sum(seconds is None for seconds in self.closed_after)


def stalled_bodies(url: str, n: int, size_bytes: int, *, source_ip: str | list[str] | None = None,
                   send_bytes: int = 1024, wait_s: float = 60.0, model: str = "default",
                   trickle: tuple[int, float] | None = None, stagger_s: float = 0.0) -> Stalls:
    """Open ``n`` :predict requests that announce ``size_bytes``, send ``send_bytes`` of it, then
    stall; watch until the server has closed them all or ``wait_s`` has passed.

    ``source_ip`` may be a list: connection ``i`` comes from ``source_ip[i % len]``. ``trickle``
    ``(nbytes, every_s)`` keeps each body alive with ``nbytes`` every ``every_s`` instead of
    silence; ``stagger_s`` waits between opening one connection and the next.
    """
    host, port = _where(url)
    sources = source_ip if isinstance(source_ip, list) else [source_ip]
    prefix = b'{"instances": [{"b64": "'
    head = (f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size_bytes}\r\n\r\n").encode()
    body = (prefix + b"A" * max(0, send_bytes - len(prefix)))[:send_bytes]
    selector = selectors.DefaultSelector()
    statuses, closed = [0] * n, [None] * n
    opened = []
    for index in range(n):
        source = sources[index % len(sources)]
        sock = socket.create_connection((host, port), timeout=30, source_address=(source, 0) if source else None)
        try:
            sock.sendall(head + body)
        except OSError:
            pass
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        opened.append(time.monotonic())
        time.sleep(stagger_s)
    deadline = time.monotonic() + wait_s
    next_drip = time.monotonic() + (trickle[1] if trickle else wait_s)
    try:
        while selector.get_map() and time.monotonic() < deadline:
            if trickle and time.monotonic() >= next_drip:
                next_drip += trickle[1]
                for key in list(selector.get_map().values()):
                    try:
                        key.fileobj.send(b"A" * trickle[0])
                    except OSError:
                        pass  # closed by the server: the read below sees it
            for key, _ in selector.select(timeout=0.05 if trickle else 0.2):
                index, sock = key.data, key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data and not statuses[index]:
                    parts = data.split(b" ", 2)
                    statuses[index] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                if not data:
                    closed[index] = time.monotonic() - opened[index]
                    selector.unregister(sock)
                    sock.close()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
    return Stalls(statuses, closed)
