"""Public mode: what an outside visitor of a shared link can and cannot do.

The app runs as on a public Space (``public=True``, owner ``olivia``), with the server's own
``HF_TOKEN`` set and a loopback Hub that records every request's headers: any request that
carries the server's token on a visitor's behalf fails the test.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageFile
from upload_files import eps_file, huge_grey_png

from app_server import launch_app
from conftest import REPO, SHAPES_MODEL
from hub_server import HubServer

pytestmark = pytest.mark.slow
SERVER = "hf_server_owner_secret_111"  # the Space's HF_TOKEN: the owner's own
OWNER = "hf_olivia_typed_token_222"
VISITOR = "hf_vic_visitor_token_333"
STAR = REPO / "docs" / "examples" / "star.png"


@pytest.fixture(scope="module")
def hub():
    from vision.hub import push

    with pytest.MonkeyPatch.context() as patch, \
            HubServer({SERVER: ("olivia", "write"), OWNER: ("olivia", "write"), VISITOR: ("vic", "write")}) as server:
        patch.setenv("HF_ENDPOINT", server.url)
        push(SHAPES_MODEL, "olivia/private-model", token=OWNER, private=True)
        push(SHAPES_MODEL, "vic/secret", token=VISITOR, private=True)
        patch.setenv("HF_TOKEN", SERVER)
        server.state.headers_seen.clear()
        yield server
    assert not any(SERVER in headers for headers in server.state.headers_seen), \
        "a request carried the server's token"


@pytest.fixture(scope="module")
def public_app(hub, tmp_path_factory):
    from vision.ui.config import Limits

    app, url = launch_app(tmp_path_factory.mktemp("public") / "models", public=True, owner="olivia",
                          limits=Limits(files_per_call=4, samples_per_session=6))
    yield app, url
    app.close()


def _client(public_app) -> Client:
    return Client(public_app[1], verbose=False)


def _error(client: Client, *args, api_name: str) -> str:
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def test_public_mode_is_on_for_spaces_and_vision_public():
    from vision.ui.config import AppConfig

    assert AppConfig.from_env({"SPACE_ID": "olivia/demo"}).public
    assert AppConfig.from_env({"VISION_PUBLIC": "1"}).public
    assert not AppConfig.from_env({}).public
    assert not AppConfig.from_env({"SPACE_ID": "olivia/demo", "VISION_PUBLIC": "0"}).public
    # Sign-in counts only where Gradio does real OAuth: on a Space with hf_oauth.
    assert AppConfig.from_env({"SPACE_ID": "o/d", "OAUTH_CLIENT_ID": "x"}).oauth
    assert not AppConfig.from_env({"VISION_PUBLIC": "1", "OAUTH_CLIENT_ID": "x"}).oauth


def test_case1_a_visitor_never_gets_the_servers_token(public_app, hub):
    visitor = _client(public_app)
    refused = _error(visitor, "olivia/pushed-by-visitor", False, False, "", api_name="/push")
    assert "write token of your own" in refused
    assert "olivia/pushed-by-visitor" not in hub.state.repos
    assert "not found" in _error(visitor, "olivia/private-model", "", api_name="/pull")
    assert not any(SERVER in headers for headers in hub.state.headers_seen)


def test_case2_3_pulled_models_belong_to_their_session(public_app, hub):
    alice, bob = _client(public_app), _client(public_app)
    message, _ = alice.predict("vic/secret", VISITOR, api_name="/pull")
    assert "Pulled" in message
    key = "mine/vic--secret"
    assert key in alice.predict(api_name="/list_models")
    assert key not in bob.predict(api_name="/list_models")
    for args, api in (((key,), "/use_model"), ((key,), "/model_card"), ((key, ""), "/delete_model")):
        assert "unknown model" in _error(bob, *args, api_name=api)
    labels, _ = alice.predict(handle_file(str(STAR)), 1, api_name="/classify")
    assert labels["label"] == "star"
    # The owner's models: visitors use them, cannot delete them.
    assert "cannot be deleted" in _error(bob, "default", "", api_name="/delete_model")
    assert "unknown model" in _error(bob, key, "", api_name="/publish_model")
    assert "only the app's owner" in _error(alice, key, VISITOR, api_name="/publish_model")
    # Alice deletes her own model; it is gone for her, and was never Bob's.
    assert "Deleted" in alice.predict(key, "", api_name="/delete_model")[-1]
    assert key not in alice.predict(api_name="/list_models")


def test_the_owner_publishes_and_cannot_delete_a_model_in_use(public_app, hub):
    app, _ = public_app
    owner, visitor = _client(public_app), _client(public_app)
    owner.predict("olivia/private-model", OWNER, api_name="/pull")
    assert "Published" in owner.predict("mine/olivia--private-model", OWNER, api_name="/publish_model")[-1]
    shared = "shared/olivia--private-model"
    assert (app.config.models_dir / "olivia--private-model" / "vision.json").is_file()
    visitor.predict(shared, api_name="/use_model")
    assert "only the app's owner" in _error(visitor, shared, VISITOR, api_name="/delete_model")
    assert "in use by 1 other session" in _error(owner, shared, OWNER, api_name="/delete_model")
    visitor.predict("default", api_name="/use_model")
    assert "Deleted" in owner.predict(shared, OWNER, api_name="/delete_model")[-1]
    assert not (app.config.models_dir / "olivia--private-model").exists()


def test_case4_a_huge_greyscale_png_is_refused_from_its_header(public_app, tmp_path, monkeypatch):
    loaded: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def spy(self):  # records every pixel decode in the server (it runs in this process)
        loaded.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    huge = huge_grey_png(tmp_path / "huge.png")
    assert "over the limit" in _error(_client(public_app), handle_file(str(huge)), 3, api_name="/classify")
    assert (12000, 12000) not in loaded


def test_case4_the_app_answers_as_the_library_does_for_a_16_bit_png(public_app, tmp_path):
    from vision.runtime.inference import Classifier

    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    expected = {p.label: p.probability for p in Classifier.from_path(SHAPES_MODEL).predict(path, top_k=4)}
    labels, _ = _client(public_app).predict(handle_file(str(path)), 4, api_name="/classify")
    got = {c["label"]: c["confidence"] for c in labels["confidences"]}
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) for k in got) < 1e-5


def test_case5_no_server_path_and_no_hint_of_which_exist(public_app):
    client = _client(public_app)
    existing = _error(client, str(SHAPES_MODEL), api_name="/model_card")
    missing = _error(client, str(SHAPES_MODEL) + "-nope", api_name="/model_card")
    assert "unknown model" in existing and "unknown model" in missing
    assert existing.replace("-nope", "") == missing.replace("-nope", "")


def test_case6_exports_are_unguessable_private_and_removed_with_the_session(public_app):
    app, url = public_app
    owner = _client(public_app)
    archive, message = owner.predict("tfjs", "none", api_name="/export")
    export_id = message.split("/exports/")[1].split(")")[0]
    assert len(export_id) >= 22  # >= 128 random bits
    with zipfile.ZipFile(archive) as exported:
        assert "model.json" in exported.namelist()
    metadata = url + f"exports/{export_id}/metadata.json"
    assert urllib.request.urlopen(metadata).status == 200
    for guess in ("exports/", f"exports/{export_id}/", "exports/shapes-tfjs-fp32-1/metadata.json"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + guess)
        assert refused.value.code == 404, guess
    folder = app.ctx.sessions.export_folder(export_id)
    app.ctx.sessions.close(owner)  # what Gradio's unload does when the tab closes
    assert not folder.exists()
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(metadata)
    assert gone.value.code == 404


def test_case7_eps_and_other_formats_are_refused_before_any_plugin_decodes(public_app, tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    def never(self, *args, **kwargs):
        raise AssertionError("the EPS plugin decoded an upload")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", never)
    eps = eps_file(tmp_path / "drawing.eps")
    message = _error(_client(public_app), handle_file(str(eps)), 3, api_name="/classify")
    assert "accepted format" in message
    message = _error(_client(public_app), "shapes", handle_file(str(eps)), None, api_name="/add_samples")
    assert "accepted format" in message
    # The multi-file field refuses it by type before any handler runs.
    message = _error(_client(public_app), "shapes", None, [handle_file(str(eps))], api_name="/add_samples")
    assert "Invalid file type" in message


def test_case8_sample_uploads_have_limits_and_leave_nothing_behind(public_app, tmp_path):
    app, _ = public_app
    client = _client(public_app)
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    assert "not an image" in _error(client, "cats", None, [handle_file(str(bad))], api_name="/add_samples")
    session = app.ctx.sessions.get(client)
    assert not session.root.exists(), "a refused upload left a folder"

    files = []
    for i in range(5):
        buffer = io.BytesIO()
        Image.fromarray(np.full((2000, 1000, 3), 40 * i, np.uint8)).save(buffer, format="PNG")
        (tmp_path / f"{i}.png").write_bytes(buffer.getvalue())
        files.append(handle_file(str(tmp_path / f"{i}.png")))
    assert "at most 4 at a time" in _error(client, "cats", None, files, api_name="/add_samples")
    table = client.predict("cats", None, files[:4], api_name="/add_samples")[0]
    assert table["data"] == [["cats", 4]]
    stored = [Image.open(p).size for p in (session.root / "samples" / "cats").glob("*.png")]
    assert stored and all(max(size) <= 512 for size in stored)  # kept downscaled
    assert "the limit is 6" in _error(client, "dogs", None, files[:3], api_name="/add_samples")
    app.ctx.sessions.close(client)
    assert not session.root.exists()


def test_idle_sessions_are_swept(public_app):
    import time

    app, _ = public_app
    client = _client(public_app)
    client.predict("dogs", None, None, api_name="/add_samples")
    session = app.ctx.sessions.get(client)
    assert session.root.exists()
    assert app.ctx.sessions.sweep(now=time.monotonic() + app.config.limits.session_idle_s + 1) >= 1
    assert not session.root.exists()


def test_sign_in_pushes_with_the_visitors_oauth_token_and_no_other(hub, tmp_path):
    """The Hub view's handler as Gradio calls it on a Space, with a signed-in visitor."""
    import shutil
    from types import SimpleNamespace

    import gradio as gr

    from vision.ui.config import AppConfig
    from vision.ui.context import Context
    from vision.ui.hub import HubView

    config = AppConfig(default_model=SHAPES_MODEL, models_dir=tmp_path / "models", public=True, owner="olivia",
                       oauth=True, state_dir=tmp_path / "state")
    ctx = Context.create(config)
    request = SimpleNamespace(session_hash="signed-in-visitor")
    session = ctx.session(request)
    shutil.copytree(SHAPES_MODEL, session.root / "models" / "mine")
    session.models["mine/mine"] = session.root / "models" / "mine"
    session.active = "mine/mine"
    hub.state.headers_seen.clear()
    oauth = gr.OAuthToken(token=VISITOR, scope="write-repos", expires_at=0)
    message = HubView(ctx).push("vic/from-oauth", False, False, "", request, oauth, None)
    assert "Pushed" in message and "vic/from-oauth" in hub.state.repos
    tokens = {line.split("Bearer ")[1] for headers in hub.state.headers_seen for line in headers.splitlines()
              if line.lower().startswith("authorization: bearer ")}
    assert tokens == {VISITOR}


def test_case9_a_truncated_jpeg_is_one_error_line_in_the_cli(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:600])
    result = subprocess.run([sys.executable, "-m", "vision", "predict", str(tmp_path / "cut.jpg")],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 'cut.jpg' is truncated or corrupt (Truncated File Read)"]
    assert "Traceback" not in result.stderr
