"""The per-client identity behind a real proxy hop: a small reverse proxy on loopback that appends
the address it sees to ``X-Forwarded-For`` (as Hugging Face's does), against clients that forge it."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import uvicorn

from app_server import free_port


class ForwardingProxy(ThreadingHTTPServer):
    """A reverse proxy on 127.0.0.1 to ``upstream`` (host, port) that keeps the client's own
    ``X-Forwarded-For`` and appends the peer it saw, as a proxy does."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        super().__init__(("127.0.0.1", free_port()), _Forward)

    @contextmanager
    def running(self) -> Iterator[ForwardingProxy]:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()


class _Forward(BaseHTTPRequestHandler):
    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in ("x-forwarded-for", "host", "connection")}
        hops = [value for name, value in self.headers.items() if name.lower() == "x-forwarded-for"]
        headers["X-Forwarded-For"] = ", ".join([*hops, self.client_address[0]])
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, *args: object) -> None:
        pass


def get(where: tuple[str, int], path: str, source: str, forged: str | None = None) -> tuple[int, str]:
    """GET ``path`` from the loopback address ``source``, with a forged ``X-Forwarded-For``."""
    connection = http.client.HTTPConnection(*where, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"X-Forwarded-For": forged} if forged else {})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def space_server() -> Iterator[tuple[str, int]]:
    """A bare uvicorn app that answers with the identity a Space's app gives a request: the proxies
    trusted as ``app.py`` sets them there (``*``), and uvicorn set as the app used to be
    (``FORWARDED_ALLOW_IPS=*``, which rewrites the scope's client to the leftmost entry)."""
    from vision.serve.client import TrustedProxies, client_id

    trusted = TrustedProxies("*")

    async def identity(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": client_id(scope, trusted).encode()})

    server = uvicorn.Server(uvicorn.Config(identity, host="127.0.0.1", port=free_port(), log_level="warning",
                                           forwarded_allow_ips="*", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield "127.0.0.1", server.config.port
    server.should_exit = True
    thread.join(10)


def test_on_a_space_the_hop_the_proxy_added_is_the_client(space_server):
    with ForwardingProxy(space_server).running() as proxy:
        where = proxy.server_address
        assert get(where, "/", "127.0.5.1") == (200, "127.0.5.1")
        # What a visitor writes into the header is to the left of what the proxy appends.
        assert get(where, "/", "127.0.5.1", forged="10.9.9.9") == (200, "127.0.5.1")
        assert get(where, "/", "127.0.5.1", forged="10.9.9.9, 10.9.9.10") == (200, "127.0.5.1")
        assert get(where, "/", "127.0.5.2", forged="127.0.5.1") == (200, "127.0.5.2")
