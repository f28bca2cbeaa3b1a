"""/web over real HTTP: only the page's files and its model's own files are served, and a
failed preparation is a 503 that names the failed step without any path of the server.

The routes are the app's (``vision.ui.static.static_routes``), served by uvicorn on a free
loopback port, over a throwaway copy of ``web/`` whose TF.js files are placeholders (only
their presence is checked before serving) and whose model is a small stand-in.
"""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette

from vision.export.formats import WEB_FILES, WEB_VENDOR
from vision.serve.webpage import WebPage
from vision.ui.config import AppConfig
from vision.ui.session import SessionRegistry
from vision.ui.static import static_routes

from app_server import free_port
from conftest import REPO, SHAPES_MODEL

SHARDS = ("group1-shard1of2.bin", "group1-shard2of2.bin")


def fake_web(folder: Path, tfjs: bool = True, model: bool = True) -> Path:
    """A copy of web/'s own files, with placeholder TF.js files and a two-shard stand-in model."""
    folder.mkdir()
    for name in (*WEB_FILES, "package.json"):
        shutil.copy2(REPO / "web" / name, folder / name)
    for name in WEB_VENDOR if tfjs else ():
        (folder / "node_modules" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "node_modules" / name).write_text("placeholder")
    if model:
        (folder / "model").mkdir()
        manifest = [{"paths": list(SHARDS), "weights": []}]
        (folder / "model" / "model.json").write_text(json.dumps({"format": "graph-model", "weightsManifest": manifest}))
        (folder / "model" / "metadata.json").write_text(json.dumps({"labels": ["a", "b"]}))
        for shard in SHARDS:
            (folder / "model" / shard).write_bytes(b"\0" * 16)
    return folder


@contextmanager
def serving(page: WebPage, state: Path) -> Iterator[int]:
    """The app's static routes for ``page`` on 127.0.0.1; yields the port."""
    sessions = SessionRegistry(AppConfig(default_model=SHAPES_MODEL, models_dir=state / "models", state_dir=state))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=static_routes(page, sessions)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` exactly as written (no client-side normalisation of "..")."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_web_model_serves_only_the_files_its_model_json_names(tmp_path):
    web = fake_web(tmp_path / "web")
    (web / "model" / ".env").write_text("SECRET=1")  # planted: a dotfile, a stray file, a folder
    (web / "model" / "notes.txt").write_text("not the model's")
    (web / "model" / ".git").mkdir()
    (web / "model" / ".git" / "config").write_text("[core]")
    page = WebPage(web, tmp_path / "no-bundle")
    assert page.ready
    with serving(page, tmp_path / "state") as port:
        served = {path: get(port, path)[0] for path in (
            "/web/", "/web/app.js", "/web/model/model.json", "/web/model/metadata.json",
            *(f"/web/model/{shard}" for shard in SHARDS))}
        refused = {path: get(port, path)[0] for path in (
            "/web/model/.env", "/web/model/notes.txt", "/web/model/.git/config", "/web/model/",
            "/web/model/../package.json", "/web/model/%2e%2e/package.json", "/web/model/./.env",
            "/web/model/..%2f..%2fapp.js", "/web/package.json")}
    assert set(served.values()) == {200}, served
    assert set(refused.values()) == {404}, refused


def test_a_model_json_naming_files_outside_its_folder_makes_the_page_unavailable(tmp_path):
    web = fake_web(tmp_path / "web")
    manifest = [{"paths": ["../package.json"], "weights": []}]
    (web / "model" / "model.json").write_text(json.dumps({"weightsManifest": manifest}))
    page = WebPage(web, tmp_path / "no-bundle")
    assert not page.ready and page.error == "reading the page's model failed (ValueError)"


def _fail_the_export(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, str]:
    """A web/ without its model, whose export raises what a missing tensorflowjs raises."""
    def export_page_model(web_dir: Path, bundle_path: Path, **options: object) -> None:
        raise ImportError(f"No module named 'tensorflowjs' (while exporting {bundle_path} into {web_dir})")

    monkeypatch.setattr("vision.serve.webpage.export_page_model", export_page_model)
    return fake_web(tmp_path / "web", model=False), "the model export failed (ImportError)"


def _fail_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, str]:
    """A web/ without TF.js, and an `npm` whose `npm ci` fails and names its log's path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f"#!/bin/sh\necho 'npm ERR! A complete log of this run can be found in: {tmp_path}/npm.log' >&2\n"
                   "exit 1\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return fake_web(tmp_path / "web", tfjs=False), "`npm ci` failed (VisionError)"


@pytest.mark.parametrize("failure", [_fail_the_export, _fail_npm], ids=["export", "npm"])
def test_a_failed_preparation_is_a_503_that_names_the_step_without_server_paths(tmp_path, monkeypatch, caplog,
                                                                                  failure):
    web, step = failure(monkeypatch, tmp_path)
    monkeypatch.setenv("VISION_WEB_SETUP", "1")
    caplog.set_level(logging.INFO, logger="vision.serve.webpage")
    page = WebPage(web, tmp_path / "bundle")
    page.prepare_in_background()
    assert page.wait(timeout=60) is False
    with serving(page, tmp_path / "state") as port:
        status, body = get(port, "/web/")
        model_status, _ = get(port, "/web/model/model.json")
    assert status == 503 and model_status == 503
    assert "not available" in body and step in body, body
    for path in (str(tmp_path), str(REPO), str(Path.home()), "/tmp/"):
        assert path not in body, f"{path} in {body}"
    # The server's log keeps the whole story: the exception's text and its traceback.
    assert "Traceback" in caplog.text and str(tmp_path) in caplog.text


def test_a_page_stopped_before_its_export_starts_never_exports(tmp_path, monkeypatch):
    """An app whose start fails (or that closes during `npm ci`) stops its page before the
    export's child exists: the export must then never start, not run on with no one to stop it."""
    monkeypatch.setenv("VISION_WEB_SETUP", "1")
    out = tmp_path / "page-model"
    page = WebPage(fake_web(tmp_path / "web", model=False), SHAPES_MODEL, out)
    page.stop()
    page.prepare_in_background()
    assert page.wait(timeout=300) is False
    assert "stopped before the export began" in page.error
    assert not out.exists()
