"""The Gradio app through gradio_client, against the launched server: classify, explain,
train end to end, per-session model switching, error paths, concurrent load."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app_server import cancel_once_registered, launch_app
from conftest import REPO

EXAMPLE = REPO / "docs" / "examples" / "star.png"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models_dir = tmp_path_factory.mktemp("models")
    demo, url = launch_app(models_dir, prepare_web=True)
    yield url, models_dir
    demo.close()


@pytest.fixture
def client(server):
    return Client(server[0], verbose=False)


def _png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buffer = io.BytesIO()
    pixels = np.zeros((size, size, 3), np.uint8) + np.array(colour, np.uint8)
    pixels += np.random.default_rng(sum(colour)).integers(0, 30, pixels.shape, dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _colour_zip(path: Path, classes: dict[str, tuple[int, int, int]], per_class: int = 8,
                extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, colour in classes.items():
            for i in range(per_class):
                zf.writestr(f"colours/{name}/{i}.png", _png(tuple(min(255, c + 3 * i) for c in colour)))
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return path


def _labels(result) -> list[str]:
    return [c["label"] for c in result["confidences"]]


def test_classify_and_explain(client):
    labels, latency = client.predict(handle_file(str(EXAMPLE)), 3, api_name="/classify")
    assert labels["label"] == "star" and len(labels["confidences"]) == 3
    assert "ms" in latency
    overlay_path, caption = client.predict(handle_file(str(EXAMPLE)), "gradcam++", "circle", 0.5,
                                           api_name="/explain")
    overlay = np.asarray(Image.open(overlay_path).convert("RGB"))
    original = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    assert overlay.shape == original.shape and np.abs(overlay.astype(int) - original).mean() > 5
    assert "gradcam++" in caption and "circle" in caption


def test_train_end_to_end_then_switch_models_per_session(server, tmp_path):
    url, models_dir = server
    archive = _colour_zip(tmp_path / "colours.zip", {"red": (200, 20, 20), "blue": (20, 20, 200)},
                          extra={"colours/red/notes.txt": b"not an image"})
    trainer = Client(url, verbose=False)
    result = trainer.predict(handle_file(str(archive)), "simple_cnn", 32, 2, True, False, "colours",
                             api_name="/train")
    status, _curves, metrics, confusion, _gallery, _choices, _reliability, _issues, _pair = result
    assert "Saved **colours**" in metrics and "Skipped 1 unreadable" in status
    assert Path(confusion).is_file()
    assert (models_dir / "colours" / "vision.json").is_file()
    assert "shared/colours" in trainer.predict(api_name="/list_models")  # private mode: saved for everyone

    # This session switches to the new model; a second session keeps the default.
    trainer.predict("shared/colours", api_name="/use_model")
    red = tmp_path / "red.png"
    red.write_bytes(_png((200, 20, 20)))
    labels, _ = trainer.predict(handle_file(str(red)), 2, api_name="/classify")
    assert set(_labels(labels)) == {"red", "blue"} and labels["label"] == "red"
    labels, _ = trainer.predict(handle_file(str(EXAMPLE)), 2, api_name="/classify")
    assert labels["label"].startswith("Not sure (nearest: ")  # a star is no colour it was trained on
    other = Client(url, verbose=False)
    labels, _ = other.predict(handle_file(str(EXAMPLE)), 2, api_name="/classify")
    assert labels["label"] == "star"

    trainer.predict("default", api_name="/use_model")  # a model in use cannot be deleted
    message = other.predict("shared/colours", "", api_name="/delete_model")[-1]
    assert "Deleted" in message and not (models_dir / "colours").exists()


def _error(client, *args, api_name: str) -> str:
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def test_error_paths_show_clear_messages_and_change_nothing(client, server, tmp_path):
    _, models_dir = server
    before = sorted(p.name for p in models_dir.iterdir())

    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_png((10, 200, 10), 64)[:200])
    assert "truncated or corrupt" in _error(client, handle_file(str(truncated)), 3, api_name="/classify")

    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    assert "over the limit" in _error(client, handle_file(str(huge)), 3, api_name="/classify")

    one_class = _colour_zip(tmp_path / "one.zip", {"red": (200, 0, 0)})
    message = _error(client, handle_file(str(one_class)), "simple_cnn", 32, 1, False, False, "one",
                     api_name="/train")
    assert "only one class folder" in message

    hostile = _colour_zip(tmp_path / "evil.zip", {"a": (0, 0, 0), "b": (255, 255, 255)},
                          extra={"../../escape.png": _png((1, 2, 3))})
    message = _error(client, handle_file(str(hostile)), "simple_cnn", 32, 1, False, False, "evil",
                     api_name="/train")
    assert "outside the archive" in message

    not_zip = tmp_path / "data.zip"
    not_zip.write_text("hello")
    assert "not a zip" in _error(client, handle_file(str(not_zip)), "simple_cnn", 32, 1, False, False,
                                 "x", api_name="/train")
    assert "name the model" in _error(client, None, "simple_cnn", 32, 1, False, False, "../etc",
                                      api_name="/train")
    assert "already exists" in _error(client, handle_file(str(one_class)), "simple_cnn", 32, 1, False,
                                      False, "shapes", api_name="/train")
    assert "unknown model" in _error(client, "/etc", api_name="/use_model")
    assert "unknown model" in _error(client, str((models_dir / "shapes").resolve()), "", api_name="/delete_model")
    assert "cannot be deleted" in _error(client, "default", "", api_name="/delete_model")

    assert sorted(p.name for p in models_dir.iterdir()) == before
    assert not (tmp_path.parent / "escape.png").exists()


def test_teachable_machine_samples_then_train(server, tmp_path):
    url, models_dir = server
    client = Client(url, verbose=False)
    for name, colour in (("dark", (10, 10, 10)), ("light", (240, 240, 240))):
        files = []
        for i in range(5):
            path = tmp_path / f"{name}{i}.png"
            path.write_bytes(_png(colour))
            files.append(handle_file(str(path)))
        table = client.predict(name, None, files, api_name="/add_samples")[0]
    assert {row[0]: row[1] for row in table["data"]} == {"dark": 5, "light": 5}
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    assert "not an image" in _error(client, "dark", None, [handle_file(str(bad))], api_name="/add_samples")


def test_eight_concurrent_clients_without_errors(server):
    url, _ = server
    errors: list[BaseException] = []
    labels: list[str] = []

    def user() -> None:
        client = Client(url, verbose=False)
        for _ in range(25):
            try:
                result, _ = client.predict(handle_file(str(EXAMPLE)), 1, api_name="/classify")
                labels.append(result["label"])
            except BaseException as error:  # counted below
                errors.append(error)

    threads = [threading.Thread(target=user) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors[:3]
    assert labels == ["star"] * 200


def test_cancel_stops_training_and_saves_nothing(server, tmp_path):

    url, models_dir = server
    archive = _colour_zip(tmp_path / "c.zip", {"red": (200, 20, 20), "blue": (20, 20, 200)}, per_class=20)
    client = Client(url, verbose=False)
    job = client.submit(handle_file(str(archive)), "simple_cnn", 32, 60, True, False, "never-saved",
                        api_name="/train")
    assert cancel_once_registered(client, "/cancel_training").startswith("Cancelling")
    with pytest.raises(AppError, match="cancelled"):
        job.result(timeout=120)
    assert not (models_dir / "never-saved").exists()


def test_app_py_starts_on_a_chosen_model_with_flags(tmp_path):
    import os
    import shutil
    import sys

    from app_server import free_port, running

    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "shapes", models / "mine")
    port = free_port()
    command = [sys.executable, str(REPO / "app.py"), "--model", str(models / "mine"), "--host", "127.0.0.1",
               "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/", env={**os.environ, "VISION_MODELS_DIR": str(models)}):
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert client.predict(api_name="/list_models") == ["default"]
        labels, _ = client.predict(handle_file(str(EXAMPLE)), 1, api_name="/classify")
        assert labels["label"] == "star"

def test_export_view_and_the_web_page_served_by_the_app(client, server):
    import urllib.error
    import urllib.request
    import zipfile as zf

    url, _ = server
    archive, message = client.predict("tfjs", "uint8", api_name="/export")
    with zf.ZipFile(archive) as exported:
        assert {"model.json", "metadata.json"} <= set(exported.namelist())
    link = message.split("](")[1].split(")")[0]
    assert link.startswith("/web/?model=/exports/")
    base = link.split("model=")[1]
    metadata = urllib.request.urlopen(url.rstrip("/") + base + "/metadata.json").read()
    assert b'"quantization": "uint8"' in metadata
    assert _web_page_status(url) == 200
    for hidden in ("web/package.json", "web/test/classifier.test.js", "exports/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + hidden)
        assert refused.value.code == 404, hidden
    assert "choose: float16, dynamic" in _error(client, "tflite", "uint8", api_name="/export")


def _web_page_status(url: str, timeout: float = 600) -> int:
    """/web/'s status once the page's model is exported (503 "being prepared" until then)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url + "web/").status
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                return error.code
        time.sleep(1)


def test_hub_view_push_and_pull_never_leak_the_token(client, server, monkeypatch, caplog, capfd):
    import logging

    from hub_server import HubServer

    token = "hf_app_secret_token_5555"
    caplog.set_level(logging.DEBUG)
    with HubServer({token: ("carol", "write")}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        pushed = client.predict("carol/shapes", True, False, token, api_name="/push")
        assert "Pushed" in pushed and "/carol/shapes/commit/" in pushed
        assert hub.state.repos["carol/shapes"].private
        refused = _error(client, "carol/other", False, False, "hf_wrong_token_000", api_name="/push")
        assert "rejected the token" in refused and "hf_wrong_token_000" not in refused
        pulled = client.predict("carol/shapes", token, api_name="/pull")
        assert "Pulled" in pulled[0] and "carol--shapes" in str(pulled[1])
        labels, _ = client.predict(handle_file(str(EXAMPLE)), 1, api_name="/classify")
        assert labels["label"] == "star"
    captured = capfd.readouterr()
    everything = captured.out + captured.err + caplog.text + str(pushed) + str(pulled)
    assert token not in everything
    assert "hf_wrong_token_000" not in everything


def test_models_view_imports_a_teachable_machine_zip_and_compares(client, tm_export, shapes_folder, tiny_bundle,
                                                                   tmp_path):
    import json as json_module

    table, _, status = client.predict(handle_file(str(tm_export / "tm-tfjs-model.zip")), "from-tm",
                                      api_name="/import_teachable_machine")
    assert "Imported **" in status and "shared/from-tm" in status
    assert "shared/from-tm" in [row[0] for row in table["data"]]
    labels = json_module.loads((Path(tiny_bundle) / "vision.json").read_text())["labels"]
    image = next((shapes_folder / "val" / labels[0]).iterdir())
    result, _ = client.predict(handle_file(str(image)), 3, api_name="/classify")  # now this session's model
    assert set(_labels(result)) <= set(labels)
    photos = tmp_path / "photos.zip"
    with zipfile.ZipFile(photos, "w") as zf:
        for path in (shapes_folder / "val").rglob("*.png"):
            zf.write(path, f"photos/{path.parent.name}/{path.name}")
    rows = client.predict(["shared/from-tm"], handle_file(str(photos)), api_name="/compare_models")["data"]
    assert len(rows) == 1 and rows[0][0] == "from-tm" and 0.0 <= float(rows[0][1]) <= 1.0
    assert all(label in rows[0][-1] for label in labels)  # recall per class
    message = _error(client, handle_file(str(photos)), "x", api_name="/import_teachable_machine")
    assert "not a Teachable Machine export" in message


def test_train_view_class_actions_and_confusion_cells(server, tmp_path):
    """The Train view's card actions (remove a sample, rename, delete a class) and, after a
    training from those samples, one confusion-matrix cell's images with their Grad-CAMs."""
    client = Client(server[0], verbose=False)
    colours = {"red": (200, 20, 20), "blue": (20, 20, 200), "spare": (20, 200, 20)}
    for name, colour in colours.items():
        files = []
        for i in range(6 if name != "spare" else 1):
            path = tmp_path / f"{name}{i}.png"
            path.write_bytes(_png(tuple(min(255, c + 4 * i) for c in colour)))
            files.append(handle_file(str(path)))
        table = client.predict(name, None, files, api_name="/add_samples")[0]
    table = client.predict("red", None, [files[0]], api_name="/add_samples")[0]  # red keeps its place
    assert table["data"] == [["red", 7], ["blue", 6], ["spare", 1]]
    assert client.predict("red", 6, api_name="/remove_sample") == [["red", 6], ["blue", 6], ["spare", 1]]
    assert client.predict("blue", "navy", api_name="/rename_class") == [["red", 6], ["navy", 6], ["spare", 1]]
    assert client.predict("spare", api_name="/delete_class") == [["red", 6], ["navy", 6]]
    assert "no class named" in _error(client, "spare", api_name="/delete_class")
    assert "already exists" in _error(client, "red", "navy", api_name="/rename_class")
    assert "no sample 6" in _error(client, "red", 6, api_name="/remove_sample")

    result = client.predict(None, "simple_cnn", 32, 2, False, False, "cards", api_name="/train")
    table = result[8]["value"]  # the clickable confusion matrix: rows true, columns predicted
    assert table["headers"][1:] == ["navy", "red"] and [row[0] for row in table["data"]] == ["navy", "red"]
    counts = [[int(x) for x in row[1:]] for row in table["data"]]
    row, col = next((r, c) for r in range(2) for c in range(2) if counts[r][c])
    tiles = client.predict(f"{row}:{col}", api_name="/show_mistakes")
    names = ["navy", "red"]
    assert len(tiles) == counts[row][col]
    assert all(tile["caption"].startswith(f"true {names[row]} → predicted {names[col]}") for tile in tiles)
    image = np.asarray(Image.open(tiles[0]["image"]))
    assert image.shape[1] >= 2 * (image.shape[0] - 22) - 2  # the picture and its Grad-CAM side by side
    assert "no cell" in _error(client, "x", api_name="/show_mistakes")
