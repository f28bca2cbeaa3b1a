"""The Optimize view through gradio_client, against the launched app in public mode: distil
the shapes model into a tiny student, prune it, quantize it to int8, and use what it made;
cancel a run; the errors a visitor meets before anything runs."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from vision.optimize.compress import COLUMNS

from app_server import cancel_once_registered, launch_app
from conftest import SHAPES_MODEL

pytestmark = pytest.mark.slow
CLASSES = ["circle", "square", "star", "triangle"]  # the shapes model's, in its order


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app, url = launch_app(tmp_path_factory.mktemp("optimize") / "models", public=True)
    yield app, url
    app.close()


def _shapes_zip(path: Path, classes: list[str] | None = None, seed: int = 5) -> Path:
    """Six 64 px shapes a class as PNG class folders; ``classes`` renames the folders."""
    from vision.data.synthetic import SHAPES, make_shapes

    data = make_shapes(per_class=6, size=64, seed=seed)
    names = dict(zip(SHAPES, classes or SHAPES))
    with zipfile.ZipFile(path, "w") as archive:
        for i, (pixels, label) in enumerate(zip(data.images, data.labels)):
            png = path.parent / f"{i}.png"
            Image.fromarray(pixels).save(png)
            archive.write(png, f"shapes/{names[SHAPES[label]]}/{i}.png")
    return path


def _pngs(folder: Path, count: int, seed: int) -> list[Path]:
    from vision.data.synthetic import make_shapes

    paths = []
    for i, pixels in enumerate(make_shapes(per_class=1, size=64, seed=seed).images[:count]):
        paths.append(folder / f"unlabelled-{seed}-{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _args(archive: Path | None, name: str, *, distil: bool = True, epochs: int = 2, views: int = 2,
          sparsity: float = 0.0, int8: bool = False, unlabelled: list[Path] | None = None) -> list:
    return [handle_file(str(archive)) if archive else None, [handle_file(str(p)) for p in unlabelled or []],
            distil, "simple_cnn", 32, epochs, views, sparsity, int8, name]


def test_distil_prune_int8_tabulates_each_variant_and_each_becomes_usable(app, tmp_path):
    vision_app, url = app
    archive = _shapes_zip(tmp_path / "shapes.zip")
    client = Client(url, verbose=False)
    status, table, plot, int8_zip, chosen = client.predict(
        *_args(archive, "opt", sparsity=0.5, int8=True, unlabelled=_pngs(tmp_path, 2, seed=9)), api_name="/optimize")

    assert "(distilled → pruned → int8) with 20 training images (2 unlabelled), measuring on 4" in status
    assert table["headers"] == ["variant", *COLUMNS[1:]]
    rows = {row[0]: row for row in table["data"]}
    assert list(rows) == ["original", "distilled", "distilled+pruned", "distilled+pruned+int8"]
    for name, size, gzipped, ms, accuracy, agreement in rows.values():
        assert 0 < gzipped <= size * 1.01 and 0 < ms < 1000, name
        assert 0.0 <= accuracy <= 1.0 and 0.0 <= agreement <= 1.0, name
    assert rows["original"][5] == 1.0 and rows["original"][1] > 1.0  # resnet_small: 1.6 MB
    # Agreement recomputed from each model's own answers on the 4 images it measured on (the
    # upload's validation split): Keras for the bundles, LiteRT for the int8 flatbuffer.
    from top1 import top1_answers

    from vision.bundle.store import load_bundle
    from vision.data.datasets import load_zip

    session = vision_app.ctx.sessions.get(client)
    pruned = load_bundle(session.models["mine/opt-pruned"])
    with zipfile.ZipFile(int8_zip) as exported:
        (tmp_path / "int8.tflite").write_bytes(exported.read("model.tflite"))
    answers = top1_answers(load_zip(str(archive), extract_to=tmp_path / "check").val, {
        "original": load_bundle(SHAPES_MODEL), "distilled": load_bundle(session.models["mine/opt-distilled"]),
        "distilled+pruned": pruned, "distilled+pruned+int8": tmp_path / "int8.tflite"}, pruned)
    for name, row in rows.items():
        assert row[5] == pytest.approx(np.mean(answers[name] == answers["original"]), abs=1e-3), (name, answers)
    # The student is smaller; pruning's zeros only save space once compressed; int8 is a quarter.
    assert rows["distilled"][1] < rows["original"][1]
    assert rows["distilled+pruned"][2] < 0.8 * rows["distilled"][2]
    assert rows["distilled+pruned+int8"][1] < 0.4 * rows["distilled+pruned"][1]
    assert Image.open(plot).size[0] > 400

    # The bundles are this session's models; the dropdown is on the last one.
    assert chosen["value"] == "mine/opt-pruned"
    assert [key for _, key in chosen["choices"]] == ["default", "mine/opt-distilled", "mine/opt-pruned"]
    assert {"mine/opt-distilled", "mine/opt-pruned"} <= set(client.predict(api_name="/list_models"))
    assert "mine/opt-distilled" not in Client(url, verbose=False).predict(api_name="/list_models")
    assert all(folder.is_relative_to(session.root) for folder in session.models.values())
    assert "Using **opt-distilled**" in client.predict("mine/opt-distilled", api_name="/use_model")
    star = tmp_path / "star.png"
    from vision.data.synthetic import make_shapes

    shapes = make_shapes(per_class=1, size=64, seed=11)
    Image.fromarray(shapes.images[list(shapes.labels).index(2)]).save(star)
    labels, _ = client.predict(handle_file(str(star)), 4, api_name="/classify")
    assert {c["label"] for c in labels["confidences"]} == set(CLASSES)
    assert abs(sum(c["confidence"] for c in labels["confidences"]) - 1.0) < 1e-3

    # The int8 variant: a full-integer TFLite export, downloadable and in the Export table.
    with zipfile.ZipFile(int8_zip) as exported:
        assert {"model.tflite", "parity.json", "metadata.json"} <= set(exported.namelist())
    export_rows = client.predict(api_name="/export_table")["data"]
    assert [row[:3] for row in export_rows] == [["opt-pruned", "TFLite", "int8 (PTQ)"]]
    assert len(session.exports) == 1 and not list(vision_app.config.state_dir.glob("vision-optimize-*"))


def _cancel(client: Client) -> None:
    reply = client.predict(api_name="/cancel_optimize")
    assert reply.startswith("Cancelling"), reply


def _ended_and_left_nothing(vision_app, client: Client, name: str) -> None:
    session = vision_app.ctx.sessions.get(client)
    deadline = time.monotonic() + 10
    while (session.training or vision_app.ctx.training_slot.locked()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not session.training and not vision_app.ctx.training_slot.locked()
    root = vision_app.config.state_dir.parent  # the models folder, the sessions', the exports' and the staging
    assert not list(root.rglob(f"{name}-*")), "a variant of the cancelled run was left on disk"
    assert not list(vision_app.config.state_dir.glob("vision-optimize-*"))
    assert not session.models and not session.exports
    assert "Nothing is optimizing" in client.predict(api_name="/cancel_optimize")


def test_cancel_ends_a_long_run(app, tmp_path):
    vision_app, url = app
    client = Client(url, verbose=False)
    job = client.submit(*_args(_shapes_zip(tmp_path / "shapes.zip"), "never", epochs=60, views=8),
                        api_name="/optimize")
    assert cancel_once_registered(client, "/cancel_optimize").startswith("Cancelling")
    with pytest.raises(AppError, match="optimizing was cancelled; no variant was kept"):
        job.result(timeout=120)
    assert not any("distilling: epoch 60/60" in str(out[0]) for out in job.outputs())
    _ended_and_left_nothing(vision_app, client, "never")


def _written(root: Path, pattern: str) -> bool:
    """Whether a file matching ``pattern`` is under ``root``, while the run writes and removes
    folders there (a staging folder that vanishes mid-walk is a miss, not an error)."""
    try:
        return any(root.rglob(pattern))
    except FileNotFoundError:
        return False


def test_cancel_after_a_variant_was_written_keeps_none_of_the_run(app, tmp_path):
    """Cancelled once the distilled student is saved (while it is measured, or pruned): the run
    keeps nothing, not the finished student either, and no half-written folder stays behind."""
    vision_app, url = app
    client = Client(url, verbose=False)
    job = client.submit(*_args(_shapes_zip(tmp_path / "shapes.zip"), "later", sparsity=0.5),
                        api_name="/optimize")
    root = vision_app.config.state_dir.parent
    deadline = time.monotonic() + 120
    while not _written(root, "later-distilled/vision.json"):
        assert time.monotonic() < deadline and not job.done(), "the distilled variant was never written"
        time.sleep(0.05)
    _cancel(client)
    with pytest.raises(AppError, match="optimizing was cancelled; no variant was kept"):
        job.result(timeout=120)
    assert not any("pruning: epoch 6/6" in str(out[0]) for out in job.outputs()), "cancelled too late"
    _ended_and_left_nothing(vision_app, client, "later")


def test_errors_before_anything_runs(app, tmp_path):
    _, url = app

    def error(*args) -> str:
        # A session of its own each: one session holds one event of the training group at a time,
        # and an event that failed is let go a moment after its caller hears of it.
        with pytest.raises(AppError) as info:
            Client(url, verbose=False).predict(*args, api_name="/optimize")
        return str(info.value)

    colours = _shapes_zip(tmp_path / "colours.zip", ["red", "green", "blue", "white"])
    assert "are not the active model's (circle, square, star, triangle)" in error(*_args(colours, "c"))
    # Public mode: no upload and no classes in Train, so nothing to learn from (the folder the
    # bundle records is on the server, and never read for a visitor).
    assert "upload a .zip of the model's training images" in error(*_args(None, "none"))
    shapes = _shapes_zip(tmp_path / "shapes.zip")
    assert "choose at least one of" in error(*_args(shapes, "x", distil=False))
    assert "name the variants" in error(*_args(shapes, "../x", int8=True))
    assert "greater than maximum value 48" in error(*_args(shapes, "x", views=500))  # the sliders' ranges hold


def test_private_mode_reads_the_folder_the_model_records_public_mode_never(tmp_path):
    """The last source of images (no upload, no classes): the bundle's own training folder,
    for the owner only."""
    from vision.bundle.store import load_bundle
    from vision.data.synthetic import write_shapes
    from vision.ui.config import AppConfig
    from vision.ui.context import Context
    from vision.ui.optimize import OptimizeView
    from vision.ui.session import Session

    folder = write_shapes(tmp_path / "data", per_class=3, size=32, seed=1)
    bundle = load_bundle(SHAPES_MODEL)
    bundle.info = {**bundle.info, "dataset": {**bundle.info["dataset"], "source": str(folder)}}
    session = Session(root=tmp_path / "session")
    for public in (False, True):
        view = OptimizeView(Context.create(AppConfig(SHAPES_MODEL, tmp_path / "models", public=public,
                                                     state_dir=tmp_path / "state")))
        if public:
            with pytest.raises(Exception, match="upload a .zip"):
                view._dataset(session, bundle, None, tmp_path)
        else:
            dataset = view._dataset(session, bundle, None, tmp_path)
            assert dataset.class_names == CLASSES and len(dataset.train) == 8 and len(dataset.val) == 4
            assert np.bincount(dataset.val.labels).tolist() == [1, 1, 1, 1]
