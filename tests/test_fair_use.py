"""Public mode under load: what one visitor can take from the others (queue, training slot,
disk), against the app launched as on a public Space."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from upload_files import eps_file

from app_server import free_port, launch_app, running
from conftest import REPO, SHAPES_MODEL
from flood_clients import call_route_flood, fresh_hash_flood

pytestmark = pytest.mark.slow
STAR = REPO / "docs" / "examples" / "star.png"


@pytest.fixture(scope="module")
def public_app(tmp_path_factory):
    from vision.ui.config import Limits

    app, url = launch_app(tmp_path_factory.mktemp("fair") / "models", public=True, owner="olivia",
                          limits=Limits(session_disk_mb=5, exports_per_session=3))
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    """Twelve small photos-like PNGs per class, two classes."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = []
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.integers(-40, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{label}{i}.png"
            Image.fromarray(pixels).save(path)
            paths.append(path)
    return paths


def _with_samples(url: str, pictures: list[Path]) -> Client:
    client = Client(url, verbose=False)
    for label in ("red", "blue"):
        files = [handle_file(str(p)) for p in pictures if p.name.startswith(label)]
        client.predict(label, None, files, api_name="/add_samples")
    return client


def _fn_index(app, api_name: str) -> int:
    return next(i for i, fn in app.demo.fns.items() if fn.api_name == api_name)


def _join(url: str, session_hash: str, fn_index: int, data: list) -> tuple[int, str]:
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None,
                       "trigger_id": None}).encode()
    request = urllib.request.Request(url + "gradio_api/queue/join", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _training_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "training-job" and t.is_alive()]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _train_args(name: str, epochs: int = 60) -> list:
    # simple_cnn at 64 px with no early stop in sight: long enough to act on while it runs. A raw
    # queue join sends every input, the Train view's loss, smoothing, mixing and class weights too.
    return [None, "simple_cnn", 64, epochs, True, False, name, "crossentropy", 0.0, "none", True]


def test_case1_one_session_cannot_fill_the_queue_for_everyone(public_app, pictures):
    app, url = public_app
    flooder = _with_samples(url, pictures)
    train = _fn_index(app, "train")
    answers = [_join(url, flooder.session_hash, train, _train_args("flood" if i == 0 else "../bad"))
               for i in range(65)]
    assert [status for status, _ in answers].count(200) == 1
    refused = {text for status, text in answers if status != 200}
    assert all("already has a training" in text for text in refused), refused
    try:
        _wait(lambda: app.ctx.training_slot.locked(), 30, "the flood's one training never started")
        other = Client(url, verbose=False)
        other.predict(handle_file(str(STAR)), 3, api_name="/classify")  # warm
        for _ in range(5):
            started = time.perf_counter()
            labels, _ = other.predict(handle_file(str(STAR)), 3, api_name="/classify")
            # Normal latency is ~0.1 s through gradio_client; a training shares the two CPUs.
            assert time.perf_counter() - started < 3.0
            assert labels["label"] == "star"
        assert app.ctx.training_slot.locked(), "the training ended before the other visitor was measured"
    finally:
        flooder.predict(api_name="/cancel_training")
        _wait(lambda: not _training_threads(), 60, "the cancelled training did not stop")


def _queued(app, group: str) -> list:
    return [event for event in list(app.demo._queue.event_ids_to_events.values()) if event.fn.concurrency_id == group]


@contextmanager
def _train_group_busy(app, url: str, pictures: list[Path]):
    """Gradio's train group (one event at a time) busy with a training that waits for the
    training slot, which the test holds as another training would: whatever joins the group
    waits behind it, and no CPU is spent. Yields the waiting training's client."""
    holder = _with_samples(url, pictures)
    with app.ctx.training_slot:
        job = holder.submit(*_train_args("waits"), api_name="/train")
        _wait(lambda: any("Waiting for another training" in str(out[0]) for out in job.outputs()), 60,
              "the training never started waiting for the slot")
        try:
            yield holder
        finally:
            holder.predict(api_name="/cancel_training")
    # What the floods got in runs next and fails at once (its model name is refused): gone
    # before the next test, whose training would wait behind it.
    _wait(lambda: not _training_threads() and not _queued(app, "train"), 60, "the train group did not drain")


def _named(url: str, api_name: str, values: list) -> dict:
    """``values`` by the endpoint's parameter names, as ``/call/v2/<api_name>`` takes them."""
    with urllib.request.urlopen(url + "gradio_api/info", timeout=30) as response:
        parameters = json.loads(response.read())["named_endpoints"][f"/{api_name}"]["parameters"]
    return {parameter["parameter_name"]: value for parameter, value in zip(parameters, values)}


def test_every_way_into_the_queue_is_counted_per_session_and_per_address(public_app, pictures):
    app, url = public_app
    train, refused_name = _fn_index(app, "train"), _train_args("../bad")
    with _train_group_busy(app, url, pictures) as holder:
        # The holder's session has its training: fn_index in every form Gradio's own model
        # reads as that index, and Gradio's call-then-stream route, find the share taken.
        for spelled in (str(train), float(train), f" {train} ", f"+{train}", f"0{train}"):
            status, text = _join(url, holder.session_hash, spelled, refused_name)
            assert status == 429 and "this session already has a training" in text, (spelled, status, text)
        calls = call_route_flood(url, "train", 71, holder.session_hash, data=refused_name)
        assert calls.statuses == {429: 71}, calls
        assert all("this session already has a training" in text for text in calls.refusals), calls.refusals
        # Another address, a session hash made up for every entry: its address's share of
        # trainings (2) is all it gets, through /queue/join, /call and /call/v2 together.
        flood = fresh_hash_flood(url, 200, fn_index=str(train), data=refused_name, source_ip="127.0.0.2")
        calls = call_route_flood(url, "train", 20, data=refused_name, source_ip="127.0.0.2")
        calls_v2 = call_route_flood(url, "train", 20, data=_named(url, "train", refused_name), v2=True,
                                    source_ip="127.0.0.2")
        assert flood.accepted + calls.accepted + calls_v2.accepted == 2, (flood, calls, calls_v2)
        refusals = flood.refusals + calls.refusals + calls_v2.refusals
        assert all("this address" in text and "2 trainings" in text for text in refusals), refusals
        assert len(_queued(app, "train")) == 3  # the holder's training and the two
        # The queue has room: a visitor at another address is answered while all that waits.
        labels, _ = Client(url, verbose=False).predict(handle_file(str(STAR)), 3, api_name="/classify")
        assert labels["label"] == "star"


def test_an_address_has_a_share_of_the_queue_in_all(tmp_path_factory, pictures):
    from vision.ui.fairness import QueueShares

    # Two entries an address, whatever the kind: a flood of trainings (5 allowed) meets it first.
    app, url = launch_app(tmp_path_factory.mktemp("shares") / "models", public=True,
                          shares=QueueShares(per_client=2, per_client_group={"train": 5}))
    try:
        train, refused_name = _fn_index(app, "train"), _train_args("../bad")
        with _train_group_busy(app, url, pictures):
            floods = [fresh_hash_flood(url, 50, fn_index=train, data=refused_name, source_ip=address)
                      for address in ("127.0.0.2", "127.0.0.3")]
        for flood in floods:  # each address its own two, the rest refused with the reason
            assert flood.statuses == {200: 2, 429: 48}, flood
            assert set(flood.refusals) == {"this address (all its sessions together) already has 2 requests "
                                           "waiting or running; wait for them to finish"}, flood.refusals
    finally:
        app.close()


def test_case2_a_dropped_stream_stops_the_training_before_its_slot_frees(public_app, pictures):
    app, url = public_app
    client = _with_samples(url, pictures)
    session = app.ctx.sessions.get(client)
    job = client.submit(*_train_args("dropped"), api_name="/train")
    _wait(lambda: any("Epoch 2/" in str(out[0]) for out in job.outputs()), 60, "training never reached epoch 2")
    job.cancel()  # what closing the tab's stream does: Gradio closes the handler's generator
    _wait(lambda: not _training_threads(), 15, "the training ran on after its stream was dropped")
    assert not list(app.config.state_dir.rglob("dropped")), "a detached model was saved"
    assert "mine/dropped" not in session.models
    assert not session.training and not app.ctx.training_slot.locked()


def test_case3_4_direct_routes_are_closed_and_callers_without_a_session_are_not_pooled(public_app):
    app, url = public_app
    for api_name, data in (("train", _train_args("direct")), ("list_models", []), ("pull", ["a/b", ""])):
        request = urllib.request.Request(url + f"gradio_api/run/{api_name}", json.dumps({"data": data}).encode(),
                                         {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 404
    # The one direct route left (cancel: queue=False) makes no session for a caller without one.
    before = len(app.ctx.sessions._sessions)
    request = urllib.request.Request(url + "gradio_api/run/cancel_training", json.dumps({"data": []}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "Nothing is training" in response.read().decode()
    assert len(app.ctx.sessions._sessions) == before
    with pytest.raises(Exception, match="no session"):
        app.ctx.sessions.get(object())  # a request without a session hash


def test_case5_11_dropped_exports_and_their_zips_are_deleted(public_app):
    app, url = public_app
    client = Client(url, verbose=False, download_files=False)  # its downloads would land in the same folder
    served = [Path(client.predict("tflite", "none", api_name="/export")[0]["path"]) for _ in range(5)]
    # Gradio served each zip where it was written: no copy of its own would outlive the session.
    assert all(path.parent.name.startswith("vision-export-") for path in served), served

    def zips() -> set[Path]:
        """This app's zips: in the five exports' folders and in the app's own state (other
        processes' exports land in the same cache)."""
        return {*(p for path in served for p in path.parent.glob("*.zip")), *app.config.state_dir.rglob("*.zip")}

    made = zips()
    assert len(made) == 3, f"3 exports are kept, but these zips are on disk: {sorted(made)}"
    app.ctx.sessions.close(client)
    assert not zips(), "an export's zip outlived its session"
    assert not any(app.ctx.sessions.exports_root.iterdir())


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_case7_extraction_counts_against_the_session_quota(public_app, tmp_path):
    app, url = public_app
    bomb = _zip(tmp_path / "bomb.zip", {"a/zeros.png": bytes(20_000_000), "b/zeros.png": bytes(10)})
    assert bomb.stat().st_size < 100_000
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="limit"):
        client.predict(handle_file(str(bomb)), *_train_args("bomb")[1:], api_name="/train")
    assert not list(app.config.state_dir.glob("vision-train-*")), "the extraction was left on disk"


def test_case10_one_bad_file_does_not_fail_a_training(public_app, pictures, tmp_path):
    _, url = public_app
    members = {f"data/{p.stem.rstrip('0123456789')}/{p.name}": p.read_bytes() for p in pictures}
    members["data/red/page.eps"] = eps_file(tmp_path / "page.eps").read_bytes()
    noisy = _png(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    members["data/blue/cut.png"] = noisy[:len(noisy) // 2]  # a PNG cut short: the header reads fine
    archive = _zip(tmp_path / "mixed.zip", members)
    client = Client(url, verbose=False)
    status, *_ = client.predict(handle_file(str(archive)), "simple_cnn", 32, 1, False, False, "mixed",
                                api_name="/train")
    assert "Skipped 2 unreadable files" in status
    assert "page.eps" in status and "cut.png" in status
    assert "Done." in status


def test_case11_sigterm_cleans_up_like_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "VISION_PUBLIC": "1", "VISION_WEB_SETUP": "0"}
    command = [sys.executable, str(REPO / "app.py"), "--model", str(SHAPES_MODEL),
               "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/", env=env) as process:
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(handle_file(str(STAR)), 3,
                                                                   api_name="/classify")
        assert list(tmp_path.glob("vision-app-*"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert not list(tmp_path.glob("vision-app-*")), "SIGTERM left the app's temporary folder"


def test_uploads_have_a_ceiling(tmp_path_factory):
    import shutil

    from gradio.utils import get_upload_folder

    held = Path(get_upload_folder()) / "vision-test-ceiling"
    held.mkdir(parents=True, exist_ok=True)
    (held / "upload.bin").write_bytes(b"x")  # the folder holds one byte: over a ceiling of 0
    app, url = launch_app(tmp_path_factory.mktemp("uploads") / "models", public=True,
                          upload_cap_bytes=0)
    try:
        with pytest.raises(Exception, match="507"):
            Client(url, verbose=False).predict(handle_file(str(STAR)), 3, api_name="/classify")
    finally:
        app.close()
        shutil.rmtree(held, ignore_errors=True)


def test_a_session_has_a_share_of_the_queue_in_all(tmp_path_factory, pictures):
    """A session's total share holds below its group's: with two requests a session and five
    trainings a group, one session's flood of trainings gets two into the queue."""
    from vision.ui.fairness import QueueShares

    app, url = launch_app(tmp_path_factory.mktemp("session-shares") / "models", public=True,
                          shares=QueueShares(per_session=2, per_group={"train": 5}, per_client=100,
                                             per_client_group={"train": 100}))
    try:
        train, refused_name = _fn_index(app, "train"), _train_args("../bad")
        with _train_group_busy(app, url, pictures):
            flooder = Client(url, verbose=False)
            answers = [_join(url, flooder.session_hash, train, refused_name) for _ in range(10)]
            assert [status for status, _ in answers].count(200) == 2, answers
            refused = [text for status, text in answers if status != 200]
            assert all("this session already has 2 requests waiting or running" in text for text in refused), refused
    finally:
        app.close()


def _card_event(app, url: str, session_hash: str, name: str) -> int:
    """The fn_index of ``name`` (remove, rename or delete) on the session's class cards. The page
    asks the cards' ``gr.render`` to draw them; what it makes lives in that session's state only,
    not in ``blocks.fns`` where FairQueue finds every other event's group."""
    render = next(i for i, fn in app.demo.fns.items() if fn.renderable is not None)
    assert _join(url, session_hash, render, [])[0] == 200

    def drawn() -> list[int]:
        if session_hash not in app.demo.state_holder:
            return []
        fns = app.demo.state_holder[session_hash].blocks_config.fns
        return [i for i, fn in list(fns.items()) if fn.rendered_in is not None and fn.name == name]

    _wait(drawn, 60, "the class cards were never drawn")
    assert drawn()[0] not in app.demo.fns
    return drawn()[0]


def test_the_session_total_holds_for_events_gr_render_makes(tmp_path_factory, pictures):
    """A class card's delete is in no group FairQueue knows (``gr.render`` made it in the
    session's own state): the session's total share is all that bounds it, and it holds. With
    two requests a session and five trainings a group, a session whose two trainings wait has
    its card refused; once they are gone, the same card event is let in."""
    from vision.ui.fairness import QueueShares

    app, url = launch_app(tmp_path_factory.mktemp("render-shares") / "models", public=True,
                          shares=QueueShares(per_session=2, per_group={"train": 5}, per_client=100,
                                             per_client_group={"train": 100}))
    try:
        owner = _with_samples(url, pictures)
        delete = _card_event(app, url, owner.session_hash, "delete")
        train, refused_name = _fn_index(app, "train"), _train_args("../bad")
        with _train_group_busy(app, url, pictures):
            assert [_join(url, owner.session_hash, train, refused_name)[0] for _ in range(2)] == [200, 200]
            status, text = _join(url, owner.session_hash, delete, [])
            assert status == 429 and "this session already has 2 requests waiting or running" in text, (status, text)
        assert _join(url, owner.session_hash, delete, [])[0] == 200
    finally:
        app.close()
