"""The owner of a public demo still has the whole workbench (issue 29): a demo's visitors get only
Classify, Live and the page, and a call to ``/train`` answers 404; the owner, signed in with
Hugging Face as ``VISION_OWNER``, opens the workbench at ``/owner/``, which answers 401 to
anyone else, for the page and for its queue. Off a Space, Gradio's login form at ``/owner/``
takes the owner's Hub name and a token the Hub confirms.

``demo`` runs in public mode with "Sign in with Hugging Face" on, as on a Space. Off a Space,
Gradio's sign-in is its local stand-in: it signs in as the Hub user of the server's token, here
the owner's, on a Hub server on loopback (``hub_server``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from gradio_client import Client, handle_file
from PIL import Image
from playwright.sync_api import sync_playwright

from vision.data.synthetic import make_shapes

from app_server import launch_app
from browser import classify_on_phone, launch_chromium, tab_names
from hub_server import HubServer

pytestmark = [pytest.mark.browser]
OWNER, VISITOR = "hf_owner_token_1234567890", "hf_visitor_token_1234567890"


@pytest.fixture(scope="module")
def hub():
    with pytest.MonkeyPatch.context() as patch, \
            HubServer({OWNER: ("olivia", "write"), VISITOR: ("vic", "write")}) as server:
        patch.setenv("HF_ENDPOINT", server.url)
        # Gradio's stand-in asks huggingface_hub, which read HF_ENDPOINT when it was imported.
        patch.setattr("huggingface_hub.hf_api.api.endpoint", server.url)
        patch.setenv("HF_TOKEN", OWNER)  # the server's login: what Gradio's local sign-in signs in as
        yield server


def _demo(tmp_path_factory, oauth: bool):
    from vision.ui.config import DEMO_VIEWS

    return launch_app(tmp_path_factory.mktemp("demo") / "models", public=True, owner="olivia", oauth=oauth,
                      views=DEMO_VIEWS)


@pytest.fixture(scope="module")
def demo(hub, tmp_path_factory):
    app, url = _demo(tmp_path_factory, oauth=True)
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def self_hosted(hub, tmp_path_factory):
    """Public mode off a Space: no real sign-in."""
    app, url = _demo(tmp_path_factory, oauth=False)
    yield app, url
    app.close()


def _status(url: str, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_visitors_get_neither_the_workbench_nor_its_routes(demo):
    _, url = demo
    assert _status(url + "owner/") == 401
    assert _status(url + "owner/config") == 401
    join = json.dumps({"data": [], "fn_index": 0, "session_hash": "visitor"}).encode()
    assert _status(url + "owner/gradio_api/queue/join", join) == 401
    assert _status(url + "owner/gradio_api/upload", b"not a form") == 401
    # Its queue's requests are capped in size as the demo's are, before its login check reads them.
    assert _status(url + "owner/gradio_api/queue/join", b" " * (2 << 20)) == 413
    assert _status(url + "gradio_api/call/train", b'{"data": []}') == 404


def test_the_signed_in_owner_opens_the_whole_workbench_with_the_demos_feedback(demo, tmp_path):
    _, url = demo
    photo = tmp_path / "star.png"
    Image.fromarray(make_shapes(1, size=96, seed=5).images[0]).save(photo)
    visitor = Client(url, verbose=False)
    visitor.predict(handle_file(str(photo)), api_name="/classify")
    visitor.predict(handle_file(str(photo)), "circle", api_name="/send_feedback")  # sent after start
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url)
        visitor_tabs = tab_names(page)
        link = page.get_attribute("#app-title a >> text=Owner: the workbench", "href")
        page.goto(url + link.lstrip("/"))  # Gradio's sign-in, then back to /owner/
        assert page.url.startswith(url + "owner/"), page.url
        owner_tabs = tab_names(page)
        page.click("[role=tab] >> text=Train")
        page.click("#feedback-owner button")  # the accordion, then "Show feedback"
        page.click("#feedback-show")
        page.wait_for_selector("#feedback-note >> text=1 reports", timeout=30_000)
        browser.close()
    assert visitor_tabs == ["Classify", "Live"]
    assert {"Classify", "Live", "Train", "Models", "Hub", "Export", "Optimize"} <= set(owner_tabs), owner_tabs


def test_only_a_fresh_sign_in_as_the_owner_counts():
    from vision.ui.owner import signed_in_owner

    def request(name: str, expires_in: float) -> SimpleNamespace:
        info = {"userinfo": {"preferred_username": name}, "expires_at": time.time() + expires_in}
        return SimpleNamespace(scope={"session": {"oauth_info": info}})

    user = signed_in_owner("olivia")
    assert user(request("olivia", 60)) == "olivia"
    assert user(request("vic", 60)) is None
    assert user(request("olivia", -1)) is None
    assert user(SimpleNamespace(scope={})) is None


def test_on_a_phone_the_sign_in_and_the_owners_link_leave_the_answer_on_the_first_screen(demo, tmp_path):
    """The demo a Space serves has two more things on its title line than the one test_sharing_view
    checks: the sign-in button and the owner's link."""
    _, url = demo
    photo = tmp_path / "shape.png"
    Image.fromarray(make_shapes(1, size=96, seed=7).images[0]).save(photo)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        _, answer, width = classify_on_phone(browser, url, photo, 360)
        browser.close()
    assert answer["y"] + answer["height"] <= 844, answer
    assert width <= 360, width


def test_off_a_space_the_owner_logs_in_with_a_token_the_hub_confirms(self_hosted):
    _, url = self_hosted
    join = json.dumps({"data": [], "fn_index": 0, "session_hash": "visitor"}).encode()
    assert _status(url + "owner/gradio_api/queue/join", join) == 401
    assert _status(url + "owner/config") == 401  # nothing of the workbench before the login
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url)
        link = page.get_attribute("#app-title a >> text=Owner: the workbench", "href")
        tried = {}
        for name, token in (("olivia", VISITOR), ("vic", VISITOR), ("olivia", OWNER)):
            page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()  # no cookie kept
            page.goto(url + link.lstrip("/"))
            page.fill("input[type=text]", name)
            page.fill("input[type=password]", token)
            page.click("button:has-text('Login')")
            # Gradio's login form says "Incorrect Credentials", or the workbench is drawn.
            page.wait_for_selector("[role=tab], :text-matches('incorrect credentials', 'i')", timeout=60_000)
            tried[name, token] = tab_names(page) if page.locator("[role=tab]").count() else None
        browser.close()
    assert tried["olivia", VISITOR] is None and tried["vic", VISITOR] is None
    assert {"Train", "Models", "Hub", "Export", "Optimize"} <= set(tried["olivia", OWNER]), tried


@pytest.mark.parametrize("views, workbench, page", [("classify,live,web", True, True), ("classify,live", True, False),
                                                    ("classify,live,train,models,hub,export,optimize", False, False)])
def test_the_workbench_is_mounted_where_visitors_miss_some_of_it_and_links_only_a_page_that_is_served(
        views, workbench, page, tmp_path):
    from vision.defaults import SHAPES_MODEL
    from vision.ui.config import AppConfig, parse_views
    from vision.ui.context import Context
    from vision.ui.owner import owner_context, wants_workbench

    config = AppConfig(default_model=SHAPES_MODEL, models_dir=tmp_path, public=True, owner="olivia",
                       views=parse_views(views), state_dir=tmp_path / "state")
    ctx = Context.create(config)
    assert wants_workbench(ctx) is workbench
    owner = owner_context(ctx)
    assert all(owner.config.shows(view) for view in ("classify", "live", "train", "models", "hub", "export"))
    assert owner.config.shows("web") is page and not wants_workbench(owner)
