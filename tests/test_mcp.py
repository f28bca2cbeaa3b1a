"""MCP: the app in public mode with ``mcp=True`` (``--mcp``), through the ``mcp`` SDK's own client over
Gradio's streamable HTTP endpoint (``/gradio_api/mcp/``): classify and explain are the only tools, and a
real photo gets the labels ``/classify`` gives it through ``gradio_client``."""

from __future__ import annotations

import ast
import asyncio
import base64
from pathlib import Path

import httpx
import matplotlib.cbook
import pytest
from gradio_client import Client, handle_file
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from vision.defaults import EVERYDAY_MODEL

from app_server import launch_app

PHOTO = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
#: As Gradio's MCP server takes a file: a data URL (or an http(s) URL it downloads).
PHOTO_URL = "data:image/jpeg;base64," + base64.b64encode(PHOTO.read_bytes()).decode()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    app, url = launch_app(tmp_path_factory.mktemp("mcp") / "models", default_model=EVERYDAY_MODEL, public=True,
                          owner="olivia", mcp=True)
    yield url
    app.close()


def mcp_session(url: str, work) -> object:
    """Run ``work(session)`` in one MCP session with the app, as an MCP client configured with the
    app's MCP URL does."""
    async def run():
        async with streamablehttp_client(f"{url.rstrip('/')}/gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)
    return asyncio.run(run())


def test_tools_are_classify_and_explain_only(app_url):
    async def work(session):
        tools = (await session.list_tools()).tools
        called = await session.call_tool("train", {})
        return tools, called

    tools, train = mcp_session(app_url, work)
    described = {tool.name: tool.description for tool in tools}
    assert set(described) == {"classify", "explain"}  # train, push, export... are not tools
    assert "Returns:" in described["classify"] and "confidences" in described["classify"]
    assert "heatmap" in described["explain"]
    assert train.isError  # and not callable by name either


def test_classify_tool_answers_as_the_api(app_url):
    async def work(session):
        return await session.call_tool("classify", {"image": PHOTO_URL, "top_k": 3})

    result = mcp_session(app_url, work)
    assert not result.isError, result.content
    # Gradio answers a two-output tool with one text: the outputs' tuple, as Python writes it.
    label, note = ast.literal_eval(result.content[0].text)
    expected, _ = Client(app_url, verbose=False).predict(handle_file(str(PHOTO)), 3, api_name="/classify")
    assert [c["label"] for c in label["confidences"]] == [c["label"] for c in expected["confidences"]]
    assert label["label"] == expected["label"]
    assert [c["confidence"] for c in label["confidences"]] == pytest.approx(
        [c["confidence"] for c in expected["confidences"]], abs=1e-6)
    assert "ms" in note


def test_a_tool_call_counts_against_the_callers_address(app_url, monkeypatch):
    """Gradio runs a tool by joining its own queue from 127.0.0.1 with the caller's headers: the fair
    queue must count the caller's address there, not an ``X-Forwarded-For`` the caller wrote. The
    caller is a direct client on 127.0.0.2 (not a trusted proxy) that forges the header."""
    from vision.ui.fairness import FairQueue

    counted = []
    entry = FairQueue.entry

    def spy(self, client, body, call):  # observes the fair queue's own reading, changes nothing
        found = entry(self, client, body, call)
        counted.append((client, found.function.api_name if found and found.function else None))
        return found

    monkeypatch.setattr(FairQueue, "entry", spy)

    def direct(headers=None, timeout=None, auth=None):
        return httpx.AsyncClient(headers=headers, timeout=timeout, auth=auth,
                                 transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))

    async def run():
        async with streamablehttp_client(f"{app_url.rstrip('/')}/gradio_api/mcp/", httpx_client_factory=direct,
                                         headers={"X-Forwarded-For": "203.0.113.9"}) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool("classify", {"image": PHOTO_URL, "top_k": 1})

    assert not asyncio.run(run()).isError
    assert counted == [("127.0.0.2", "classify")]
