"""Visitors' "wrong answer" reports (issue 29, item 5): bounded, kept across restarts, never shown to
another visitor, refused in floods, stripped of names, paths and EXIF, and exported as class folders.

The app-level tests run twice: on a small Blocks app of this file's own (an Image, a Label, the
feedback block and the owner's list, as ``vision.ui.feedback`` builds them), and on the real app,
where layout.py wires the same block under the Classify view's answer and the owner's list into
the Train view.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from vision.errors import LimitExceededError
from vision.feedback_store import (
    NONE_OF_THESE,
    PHOTO_SIDE,
    STRAY_AGE_S,
    FeedbackLimits,
    FeedbackStore,
    encode_photo,
    feedback_home,
)

from app_server import free_port, launch_app
from conftest import SHAPES_MODEL
from flood_clients import API, connect, upload
from hub_server import HubServer

OWNER = "hf_olivia_feedback_owner_1"
VISITOR = "hf_vic_feedback_visitor_2"
SHAPES = ["circle", "square", "star", "triangle"]  # the shapes model's classes
SECRET_NAME = "alice-secret-holiday"
SECRET_FOLDER = "private-folder-xyz"


def _photos(n: int) -> list[bytes]:
    """``n`` real photos (scikit-image's) as ``encode_photo`` keeps them: different sizes and contents."""
    import skimage.data

    names = ["astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "camera"]
    photos = []
    for name in names[:n]:
        pixels = getattr(skimage.data, name)()
        photos.append(encode_photo(np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels))
    return photos


def _disk(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.iterdir() if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


# -- the store ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ceiling", ["count", "bytes"])
def test_1000_sends_from_8_clients_keep_the_store_within_its_ceilings(tmp_path, ceiling):
    photos = _photos(8)
    mean = sum(map(len, photos)) // len(photos)
    # One ceiling binds, the other holds with room to spare (each has a run where it is the one hit).
    count, size = (120, 1000 * mean) if ceiling == "count" else (1000, 40 * mean)
    limits = FeedbackLimits(max_items=count, max_bytes=size, burst=1000, per_minute=0, total_burst=1000,
                            total_per_minute=0)
    store = FeedbackStore(tmp_path / "feedback", limits)
    sent: list[str] = []
    seen = {"count": 0, "bytes": 0}
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(125):
            store.admit(f"client-{k}")
            item = store.add(photos[(k + i) % 8], SHAPES[i % 4], SHAPES[(i + 1) % 4], {"circle": 0.7, "star": 0.3},
                             model="f" * 64, model_name="shapes")
            count, size = store.count, store.bytes
            with lock:
                sent.append(item.id)
                seen["count"], seen["bytes"] = max(seen["count"], count), max(seen["bytes"], size)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started

    files, on_disk = _disk(store.root)
    kept = [item.id for item in store.items()]
    print(f"\n{ceiling} ceiling: 1,000 sends from 8 threads in {seconds:.2f} s ({1000 / seconds:.0f}/s): kept "
          f"{store.count} reports, {store.bytes:,} bytes (ceilings {limits.max_items}, {limits.max_bytes:,}); "
          f"most ever seen {seen['count']} reports, {seen['bytes']:,} bytes; photos {min(map(len, photos)):,}-"
          f"{max(map(len, photos)):,} bytes")
    assert len(sent) == 1000
    assert seen["count"] <= limits.max_items and seen["bytes"] <= limits.max_bytes
    assert store.bytes == on_disk <= limits.max_bytes and files == 2 * store.count <= 2 * limits.max_items
    # The ceiling that binds was hit (within one report of it), and the newest kept: oldest dropped first.
    if ceiling == "count":
        assert store.count == limits.max_items
    else:
        assert store.bytes > limits.max_bytes - max(map(len, photos)) - 1000 and store.count < limits.max_items
    assert sorted(kept) == sorted(sent)[-len(kept):]


def test_a_restart_keeps_the_reports(tmp_path):
    folder = tmp_path / "feedback"
    first = FeedbackStore(folder, FeedbackLimits(max_items=6))
    photos = _photos(5)
    made = [first.add(photo, SHAPES[i % 4], "star", {"star": 0.6, "circle": 0.4}, model="abc") for i, photo in
            enumerate(photos)]
    # What a crash leaves: a temporary file, and a photo whose record was never written.
    (folder / ".tmp-crashed").write_bytes(b"half")
    (folder / "01234567890123456789-deadbeef.jpg").write_bytes(photos[0])
    (folder / ".tmp-in-flight").write_bytes(b"another process is writing this")
    for name in (".tmp-crashed", "01234567890123456789-deadbeef.jpg"):
        os.utime(folder / name, (time.time() - 2 * STRAY_AGE_S,) * 2)

    again = FeedbackStore(folder, FeedbackLimits(max_items=6))
    assert [item.id for item in again.items()] == [item.id for item in reversed(made)]
    assert again.items()[-1] == made[0] and again.bytes == first.bytes
    assert again.photo(made[0].id).read_bytes() == photos[0]
    assert sorted(p.name for p in folder.iterdir()) == \
        sorted([".tmp-in-flight"] + [f"{i.id}.{x}" for i in made for x in ("jpg", "json")])
    # The restarted store's ceiling counts what it found: two more drop the oldest.
    again.add(photos[1], "circle", "star", {}, model="abc")
    again.add(photos[2], "circle", "star", {}, model="abc")
    assert again.count == 6 and again.get(made[0].id) is None and again.get(made[1].id) is not None


def test_the_per_client_rate_refuses_a_flood_from_one_client(tmp_path):
    store = FeedbackStore(tmp_path, FeedbackLimits(burst=5, per_minute=6, total_burst=8, total_per_minute=6))
    for _ in range(5):
        store.admit("203.0.113.7", now=100.0)
    with pytest.raises(LimitExceededError, match="you have sent 5 reports"):
        store.admit("203.0.113.7", now=100.0)
    store.admit("198.51.100.1", now=100.0)  # another client is not refused for it
    store.admit("203.0.113.7", now=110.0)  # refilled: one per 10 s
    with pytest.raises(LimitExceededError, match="you have sent"):
        store.admit("203.0.113.7", now=110.0)
    # Everyone together has a ceiling too: fresh addresses cannot flood past it.
    store.admit("192.0.2.1", now=110.0)
    store.admit("192.0.2.2", now=110.0)
    with pytest.raises(LimitExceededError, match="many visitors"):
        store.admit("192.0.2.3", now=110.0)


def test_where_feedback_is_kept(tmp_path):
    from vision.ui.config import AppConfig

    data = tmp_path / "data"
    assert feedback_home({"VISION_FEEDBACK_DIR": str(tmp_path / "mine")}, data) == tmp_path / "mine"
    assert feedback_home({"SPACE_ID": "olivia/demo"}, data) is None  # no persistent storage attached
    data.mkdir()
    assert feedback_home({"SPACE_ID": "olivia/demo"}, data) == data / "feedback"
    assert feedback_home({}, data) is None  # off a Space, only where the owner says
    data.chmod(0o500)
    try:
        if not os.access(data, os.W_OK):  # (root can write anywhere)
            assert feedback_home({"SPACE_ID": "olivia/demo"}, data) is None
    finally:
        data.chmod(0o700)
    assert AppConfig.from_env({"VISION_FEEDBACK_DIR": str(tmp_path / "x")}).feedback_dir == tmp_path / "x"


def test_the_cli_exports_class_folders(tmp_path, capsys):
    from vision.bundle.store import open_bundle
    from vision.cli import main

    fingerprint = open_bundle(SHAPES_MODEL).fingerprint
    store = FeedbackStore(tmp_path / "feedback")
    photos = _photos(6)
    for photo, label in zip(photos, ["star", "star", "circle", NONE_OF_THESE, "square"]):
        store.add(photo, label, "triangle", {"triangle": 0.9}, model=fingerprint, model_name="shapes")
    store.add(photos[5], "circle", "star", {"star": 0.8}, model="another-model")

    out = tmp_path / "export"
    assert main(["feedback", str(SHAPES_MODEL), "--dir", str(store.root), "--export", str(out)]) == 0
    folders = {p.name: sorted(f.name for f in p.iterdir()) for p in out.iterdir()}
    assert {name: len(files) for name, files in folders.items()} == {"star": 2, "circle": 1, "square": 1}
    assert (out / "star" / folders["star"][0]).read_bytes() in photos[:2]
    assert "wrote 4 photos" in capsys.readouterr().out

    everything = tmp_path / "everything"
    assert main(["feedback", str(SHAPES_MODEL), "--dir", str(store.root), "--export", str(everything),
                 "--all-models", "--include-none"]) == 0
    assert {p.name: len(list(p.iterdir())) for p in everything.iterdir()} == \
        {"star": 2, "circle": 2, "square": 1, NONE_OF_THESE: 1}
    assert main(["feedback", str(SHAPES_MODEL), "--dir", str(store.root)]) == 0
    assert "5 reports on" in capsys.readouterr().out
    assert store.count == 6  # reading it changed nothing


# -- through an app ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub():
    with pytest.MonkeyPatch.context() as patch, \
            HubServer({OWNER: ("olivia", "write"), VISITOR: ("vic", "write")}) as server:
        patch.setenv("HF_ENDPOINT", server.url)
        yield server


def _own_app(models_dir: Path, feedback_dir: Path):
    """The smallest app with the feedback flow: Image -> Label, the block under it, the owner's list."""
    import shutil

    from vision.data.images import input_side, load_image
    from vision.ui.cache import get_classifier
    from vision.ui.config import AppConfig
    from vision.ui.context import Context
    from vision.ui.feedback import FeedbackView
    from vision.ui.train import TrainView

    shutil.copytree(SHAPES_MODEL, models_dir / "shapes")
    config = AppConfig(default_model=models_dir / "shapes", models_dir=models_dir, public=True, owner="olivia",
                       state_dir=models_dir.parent / "state", feedback_dir=feedback_dir)
    ctx = Context.create(config)
    train = TrainView(ctx)
    feedback = FeedbackView(ctx, train)

    def classify(image: str | None, request: gr.Request) -> dict[str, float]:
        if not image:
            return {}
        classifier = get_classifier(ctx.active_model(request)[1])
        result = classifier.classify(load_image(image, max_side=input_side(classifier.preprocessing.size)), top_k=3)
        return {p.label: p.probability for p in result.predictions}

    # Built as layout.py builds it: the block goes into a column left under the answer, and the
    # owner's list into the Train tab, both after the tabs exist (a Block can be entered again).
    with gr.Blocks() as demo:
        with gr.Tab("Classify"):
            image = gr.Image(type="filepath", image_mode=None, sources=["upload"], label="Image",
                             elem_id="classify-image")
            prediction = gr.Label(label="Prediction", elem_id="prediction")
            extras = gr.Column()
        with gr.Tab("Train") as train_tab:
            samples = gr.Dataframe(headers=["class", "samples"], visible=False)
        image.change(classify, image, prediction, api_name="classify")
        with extras:
            feedback.block(image, prediction)
        with train_tab:
            feedback.owner_block(samples)
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)

    class Own:
        def close(self) -> None:
            demo.close()
            ctx.sessions.close_all()
    return Own(), demo.local_url


@pytest.fixture(scope="module", params=["own", "app"])
def served(request, hub, tmp_path_factory):
    """(url, feedback folder) of an app in public mode whose owner is olivia."""
    root = tmp_path_factory.mktemp(f"feedback-{request.param}")
    feedback_dir = root / "feedback"
    if request.param == "own":
        app, url = _own_app(root / "models", feedback_dir)
    else:
        app, url = launch_app(root / "models", public=True, owner="olivia", feedback_dir=feedback_dir)
    url = url.rstrip("/")
    try:
        info = json.loads(urllib.request.urlopen(f"{url}{API}/info").read())
        missing = {"/send_feedback", "/feedback", "/add_feedback_to_class"} - set(info["named_endpoints"])
        assert not missing, f"the app does not wire vision.ui.feedback (missing {missing}): see its module docstring"
        yield url, feedback_dir
    finally:
        app.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 1200 x 900 JPEG shot sideways (EXIF orientation 6), with a camera, a GPS position and a
    description naming a folder, under a file name and in a folder that must never be kept."""
    folder = tmp_path_factory.mktemp(SECRET_FOLDER)
    rng = np.random.default_rng(3)
    pixels = np.kron(rng.integers(0, 255, (9, 12, 3)), np.ones((100, 100, 1))).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCam"
    exif[0x010E] = f"/home/alice/{SECRET_FOLDER}/{SECRET_NAME}.jpg"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    path = folder / f"{SECRET_NAME}.jpg"
    Image.fromarray(pixels).save(path, "JPEG", exif=exif.tobytes())
    assert Image.open(path).getexif()[0x010F] == "SecretCam"
    return path


def _client(url: str) -> Client:
    return Client(url, verbose=False)


def _error(client: Client, *args, api_name: str) -> str:
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def _send(client: Client, photo: Path, label: str) -> str:
    client.predict(handle_file(str(photo)), api_name="/classify")
    status, _ = client.predict(handle_file(str(photo)), label, api_name="/send_feedback")
    return status


def test_the_file_name_path_and_exif_are_never_kept(served, photo):
    url, folder = served
    before = {p.name for p in folder.iterdir()} if folder.exists() else set()
    assert "Thank you" in _send(_client(url), photo, "star")
    new = sorted({p.name for p in folder.iterdir()} - before)
    assert len(new) == 2 and {Path(name).suffix for name in new} == {".jpg", ".json"}
    kept = b"".join((folder / name).read_bytes() for name in new)
    for secret in (SECRET_NAME, SECRET_FOLDER, "alice", "SecretCam", str(photo.parent), "127.0.0.1", "/tmp"):
        assert secret.encode() not in kept, f"{secret!r} was kept"
    jpeg = folder / next(name for name in new if name.endswith(".jpg"))
    with Image.open(jpeg) as kept_photo:
        assert not kept_photo.getexif() and b"Exif" not in jpeg.read_bytes()[:4096]
        assert kept_photo.format == "JPEG" and kept_photo.size == (384, PHOTO_SIDE)  # turned upright, downscaled
    record = json.loads((folder / next(n for n in new if n.endswith(".json"))).read_text())
    assert set(record) == {"id", "time", "label", "answer", "probabilities", "unknown", "model", "model_name"}
    assert record["label"] == "star" and record["answer"] in SHAPES and set(record["probabilities"]) == set(SHAPES)
    from vision.bundle.store import open_bundle
    assert record["model"] == open_bundle(SHAPES_MODEL).fingerprint


def test_what_one_visitor_sends_is_never_returned_to_another(served, photo):
    url, folder = served
    alice, bob, owner = _client(url), _client(url), _client(url)
    assert "Thank you" in _send(alice, photo, NONE_OF_THESE)
    reply = _send(bob, photo, "circle")
    assert NONE_OF_THESE not in reply
    for token in ("", VISITOR):
        assert "only the app's owner can see visitors' feedback" in _error(bob, token, api_name="/feedback")
    # No route serves the store's files, even to someone who knows where they are.
    for jpeg in list(folder.glob("*.jpg"))[:2]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}{API}/file={jpeg}")
        assert refused.value.code in (403, 404)
    # The owner sees both.
    _, rows, note = owner.predict(OWNER, api_name="/feedback")
    labels = [row[3] for row in rows["data"]]
    assert labels[:2] == ["circle", NONE_OF_THESE] and "reports" in note


def test_the_owner_adds_a_report_to_a_class_card(served, photo):
    url, _ = served
    visitor, owner = _client(url), _client(url)
    assert "Thank you" in _send(visitor, photo, "triangle")
    gallery, rows, _ = owner.predict(OWNER, api_name="/feedback")
    newest = rows["data"][0]
    assert newest[3] == "triangle" and newest[2] in SHAPES and len(gallery) == len(rows["data"])
    assert "triangle" in gallery[0]["caption"]
    assert "only the app's owner" in _error(visitor, newest[0], "", VISITOR, api_name="/add_feedback_to_class")
    table, note = owner.predict(newest[0], "", OWNER, api_name="/add_feedback_to_class")
    assert table == [["triangle", 1]] and "triangle" in note  # the Train view's class table
    table, _ = owner.predict(newest[0], "odd ones", OWNER, api_name="/add_feedback_to_class")
    assert table == [["triangle", 1], ["odd ones", 1]]


def _send_from(url: str, photo: Path, source_ip: str) -> str:
    """One Send from ``source_ip`` as a script would: upload, call, read the answer's event."""
    file = upload(url, photo, source_ip)
    file["meta"] = {"_type": "gradio.FileData"}
    connection = connect(url, source_ip)
    try:
        connection.request("POST", f"{API}/call/send_feedback", json.dumps({"data": [file, "square"]}).encode(),
                           {"Content-Type": "application/json"})
        event = json.loads(connection.getresponse().read())["event_id"]
    finally:
        connection.close()
    with urllib.request.urlopen(f"{url}{API}/call/send_feedback/{event}", timeout=60) as answer:
        return answer.read().decode()


def test_the_per_client_rate_refuses_a_flood_from_one_address(served, photo):
    url, folder = served
    burst = FeedbackLimits().burst
    answers = [_send_from(url, photo, "127.0.0.2") for _ in range(burst + 5)]
    accepted = [a for a in answers if "Thank you" in a]
    refused = [a for a in answers if "you have sent" in a]
    assert burst <= len(accepted) <= burst + 1 and len(accepted) + len(refused) == len(answers)
    assert answers[-1] in refused
    assert "Thank you" in _send_from(url, photo, "127.0.0.3")  # another address is not refused for it


def test_the_block_shows_under_an_answer_with_the_models_classes(served):
    from vision.ui.feedback import CONSENT

    url, _ = served
    page = urllib.request.urlopen(f"{url}/config").read().decode()
    config = json.loads(page)
    texts = [c.get("props", {}).get("value") for c in config["components"]]
    assert any(isinstance(t, str) and CONSENT in t for t in texts)
    labels = [c["props"].get("label") for c in config["components"] if c.get("type") == "dropdown"]
    assert "Wrong? Pick the right class" in labels


@pytest.mark.browser
@pytest.mark.slow
def test_in_a_browser_a_visitor_says_wrong_and_the_owner_adds_it_to_a_class(served, photo, tmp_path):
    from playwright.sync_api import sync_playwright

    from browser import launch_chromium

    url, _ = served
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url)
        assert not page.locator("#feedback").is_visible()  # no answer, nothing to say "wrong" about
        page.set_input_files("#classify-image input[type=file]", str(photo))
        page.wait_for_selector("#feedback-send", state="visible", timeout=60_000)
        assert "Sending keeps, for this app's owner only" in page.inner_text("#feedback-consent")
        page.click("#feedback-label input")
        page.get_by_role("option", name=NONE_OF_THESE).first.click()
        page.click("#feedback-send")
        page.wait_for_function("document.querySelector('#feedback-status').innerText.includes('Thank you')",
                               timeout=60_000)
        page.screenshot(path=str(tmp_path / "sent.png"), full_page=True)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Visitors' feedback (owner only)").click()
        page.fill("#feedback-owner input[type=password]", OWNER)
        page.click("#feedback-show")
        page.wait_for_selector("#feedback-gallery img", timeout=60_000)
        page.locator("#feedback-gallery img").first.click()
        page.wait_for_function("document.querySelector('#feedback-note').innerText.includes('Added the photo to')",
                               timeout=60_000)
        note = page.inner_text("#feedback-note")
        browser.close()
    assert f"Added the photo to {NONE_OF_THESE}" in note
