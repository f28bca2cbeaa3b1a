"""TF Serving: the SavedModel export answers encoded images the way the library does, and the app
speaks TF Serving's REST API, called over plain HTTP as TF Serving's documentation shows it."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import skimage
import tensorflow as tf
from google.protobuf import json_format
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

from vision.data.images import input_side, load_image, preprocess
from vision.data.synthetic import make_shapes
from vision.export.formats import export
from vision.export.graph_decode import decode
from vision.export.savedmodel import serving_name
from vision.models.serving import serving_model
from vision.runtime.inference import Classifier

from app_server import launch_app
from flood_clients import chunked_body, connect, stalled_bodies

SKIMAGE = Path(skimage.__file__).parent / "data"
#: Real files of every kind the graph decodes: JPEG, RGB, grey and RGBA PNG, an animated GIF.
PHOTOS = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
          *(SKIMAGE / name for name in ("rocket.jpg", "retina.jpg", "chelsea.png", "camera.png", "logo.png",
                                        "horse.png", "no_time_for_that_tiny.gif"))]
#: Below the body cap of the app under test (max_file_size="1mb") and the side it decodes at.
SMALL = [SKIMAGE / "horse.png", SKIMAGE / "no_time_for_that_tiny.gif", SKIMAGE / "rocket.jpg"]


@pytest.fixture(scope="module")
def bundle(tiny_detector_bundle):
    return tiny_detector_bundle


@pytest.fixture(scope="module")
def served(bundle, tmp_path_factory):
    """One SavedModel export, loaded as TF Serving would load it."""
    result = export(bundle, "savedmodel", tmp_path_factory.mktemp("savedmodel") / "out")
    version = result.path / serving_name(bundle) / "1"
    return SimpleNamespace(result=result, version=version, loaded=tf.saved_model.load(str(version)))


#: The REST bounds of the app under test: bodies close after 2 s unless they keep up 64 KiB/s;
#: 3 MB in flight a client, 5 MB in all (a body is at most 1 MB of image as base64: ~1.4 MB).
PACE = dict(grace_s=2.0, idle_s=3.0)
IN_FLIGHT = dict(client_bytes=3 * 1024 * 1024, total_bytes=5 * 1024 * 1024)


@pytest.fixture(scope="module")
def app(tiny_bundle, tmp_path_factory):
    """The app in public mode with uploads capped at 1 MB, serving the bundle as ``shared/tiny``."""
    from vision.serve.bodies import BodyPace
    from vision.serve.limits import ServingLimits

    models = tmp_path_factory.mktemp("rest") / "models"
    models.mkdir()
    shutil.copytree(tiny_bundle, models / "tiny")
    launched, url = launch_app(models, public=True, max_file_size="1mb",
                               serving=ServingLimits(pace=BodyPace(**PACE), **IN_FLIGHT))
    yield SimpleNamespace(app=launched, url=url.rstrip("/"))
    # The app's start-up threads run TensorFlow; a process that exits under them aborts
    # ("terminate called without an active exception"), so a short module waits for them.
    for thread in threading.enumerate():
        if thread.name in ("warm-explainer", "prepare-web-page"):
            thread.join(timeout=600)
    launched.close()


def rest(app, path: str, body: object = None, client: str = "127.0.0.1",
         data: bytes | None = None, method: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict, Message]:
    """One call as TF Serving's REST documentation makes it: JSON in, JSON out. ``client`` is the
    loopback address the call comes from: the app sees each as another client, as it would see
    visitors (uvicorn takes X-Forwarded-For from 127.0.0.1 only)."""
    payload = data if data is not None else None if body is None else json.dumps(body).encode()
    connection = connect(app.url, client, timeout=120)
    try:
        connection.request(method or ("GET" if payload is None else "POST"), path, payload,
                           {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read()), response.headers
    finally:
        connection.close()


def _declared_only(app, path: str, content_length: int, client: str) -> tuple[int, dict]:
    """A POST that declares ``content_length`` bytes and sends none of them: the answer."""
    connection = connect(app.url, client, timeout=120)
    try:
        connection.putrequest("POST", path)
        for name, value in (("Content-Type", "application/json"), ("Content-Length", str(content_length))):
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def b64(path: Path) -> dict:
    return {"b64": base64.b64encode(path.read_bytes()).decode()}


def from_bytes(served, paths: list[Path]) -> dict:
    answers = served.loaded.signatures["serving_default"](image_bytes=tf.constant([p.read_bytes() for p in paths]))
    return {name: value.numpy() for name, value in answers.items()}


def test_the_savedmodel_is_laid_out_for_tf_serving(bundle, served):
    assert (served.version / "saved_model.pb").is_file()
    assert (served.version / "variables" / "variables.index").is_file()
    serving = served.result.metadata["serving"]
    assert serving["path"] == f"{serving_name(bundle)}/1" and serving["version"] == 1
    assert set(served.loaded.signatures) == {"serving_default", "preprocessed"}
    assert served.result.max_abs_diff <= 1e-5 and served.result.top1_agreement == 1.0


def _translucent(folder: Path) -> list[Path]:
    """chelsea.png fading out (colour and grey), its colours kept under the transparency: the
    package's RGBA files are white where transparent, so flattening them onto white changes nothing."""
    pixels = load_image(SKIMAGE / "chelsea.png")
    alpha = np.linspace(0, 255, pixels.shape[1]).astype(np.uint8)[None, :].repeat(pixels.shape[0], axis=0)
    made = []
    for mode, channels in (("RGBA", pixels), ("LA", pixels[..., :1])):
        path = folder / f"chelsea-{mode}.png"
        Image.fromarray(np.dstack([channels, alpha])).save(path)  # (H, W, 4): RGBA, (H, W, 2): LA
        made.append(path)
    return made


def test_the_savedmodel_answers_encoded_files_as_the_library_does(bundle, served, tmp_path):
    """The same files through the library (Pillow decode, then TFLite) and through the SavedModel
    (bytes decoded, reduced, resized and scaled inside the graph): JPEG, grey, transparent,
    animated, and retina.jpg, larger than the side both decode at."""
    files = PHOTOS + _translucent(tmp_path)
    assert max(load_image(SKIMAGE / "retina.jpg").shape) > input_side(bundle.preprocessing.size)
    library = Classifier(bundle)
    expected = [library.scores(path) for path in files]
    got = from_bytes(served, files)
    probabilities = np.stack([p for p, _ in expected])
    familiarity = np.array([f for _, f in expected])
    assert np.abs(got["probabilities"] - probabilities).max() <= 1e-5
    assert np.abs(got["familiarity"] - familiarity).max() <= 1e-5
    assert [label.decode() for label in got["label"]] == [bundle.labels[i] for i in probabilities.argmax(1)]
    assert (got["unknown"] == (familiarity < bundle.detector.threshold)).all()



def test_a_single_output_export_answers_probabilities_alone(bundle, served, tmp_path):
    """``export --single-output``: both signatures answer one tensor, the probabilities of the full export
    (TF Serving then answers each row as a plain list, which resnet_client.py's argmax needs)."""
    result = export(bundle, "savedmodel", tmp_path / "single", single_output=True)
    loaded = tf.saved_model.load(str(result.path / serving_name(bundle) / "1"))
    single = SimpleNamespace(loaded=loaded)
    got, full = from_bytes(single, SMALL), from_bytes(served, SMALL)
    assert list(got) == ["probabilities"] and np.abs(got["probabilities"] - full["probabilities"]).max() <= 1e-6
    outputs = result.metadata["serving"]["signatures"]
    assert {name: list(defs["outputs"]) for name, defs in outputs.items()} == {
        "serving_default": ["probabilities"], "preprocessed": ["probabilities"]}

@pytest.mark.parametrize("name, side", [("retina.jpg", 300), ("retina.jpg", 1024), ("chelsea-RGBA.png", 200),
                                        ("chelsea-LA.png", 200), ("camera.png", 100)])
def test_the_graph_decodes_the_pixels_load_image_gives(tmp_path, name, side):
    """Pixel for pixel, down to Pillow's reductions: a JPEG decoded at 1/4 scale (retina at 300 px)
    then box-filtered, a box filter alone, and on premultiplied alpha."""
    made = {path.name: path for path in _translucent(tmp_path)}
    path = made.get(name, SKIMAGE / name)
    expected = load_image(path, max_side=side)
    np.testing.assert_array_equal(decode(tf.constant(path.read_bytes()), side).numpy(), expected)


def test_the_float_signature_takes_model_input(bundle, served):
    images = make_shapes(per_class=2, size=40, seed=3).images
    x = np.stack([np.asarray(preprocess(image, bundle.preprocessing)) for image in images])
    got = served.loaded.signatures["preprocessed"](image=tf.constant(x))
    keras = serving_model(bundle.model, bundle.detector)(x, training=False)
    assert np.abs(got["probabilities"].numpy() - np.asarray(keras[0])).max() <= 1e-5
    assert np.abs(got["familiarity"].numpy() - np.asarray(keras[1])[:, 0]).max() <= 1e-5


def test_rest_metadata_is_the_exported_signature_defs(app, bundle, served):
    """What the app announces is what the SavedModel holds, read from its saved_model.pb."""
    saved = saved_model_pb2.SavedModel.FromString((served.version / "saved_model.pb").read_bytes())
    real = {name: json_format.MessageToDict(signature, preserving_proto_field_name=True,
                                            always_print_fields_with_no_presence=True)
            for name, signature in saved.meta_graphs[0].signature_def.items() if not name.startswith("__")}
    status, answer, _ = rest(app, "/v1/models/shared/tiny/metadata", client="127.0.1.1")
    assert status == 200, answer
    assert answer["model_spec"] == {"name": "shared/tiny", "signature_name": "", "version": "1"}
    assert answer["metadata"]["signature_def"]["signature_def"] == real
    assert answer["metadata"]["vision"]["labels"] == bundle.labels


def test_rest_status_and_missing_models(app):
    available = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                           "status": {"error_code": "OK", "error_message": ""}}]}
    assert rest(app, "/v1/models/shared/tiny", client="127.0.2.1")[:2] == (200, available)
    assert rest(app, "/v1/models/default/versions/1", client="127.0.2.1")[:2] == (200, available)
    for path in ("/v1/models/nothing", "/v1/models/shared/tiny/versions/2", "/v1/models/shared/../tiny"):
        status, answer, _ = rest(app, path, client="127.0.2.1")
        assert status == 404 and list(answer) == ["error"] and "Servable not found" in answer["error"], path


def test_rest_predict_answers_rows_and_columns_like_the_savedmodel(app, bundle, served):
    expected = from_bytes(served, SMALL)
    rows = []
    for path in SMALL:  # one a request: the app under test takes 1 MB a request
        status, answer, _ = rest(app, "/v1/models/shared/tiny:predict", {"instances": [b64(path)]},
                                 client="127.0.3.1")
        assert status == 200, answer
        rows += answer["predictions"]
    assert [sorted(row) for row in rows] == [["familiarity", "label", "probabilities", "unknown"]] * len(SMALL)
    assert np.abs(np.array([row["probabilities"] for row in rows]) - expected["probabilities"]).max() <= 1e-5
    assert np.abs(np.array([row["familiarity"] for row in rows]) - expected["familiarity"]).max() <= 1e-5
    assert [row["label"] for row in rows] == [label.decode() for label in expected["label"]]
    assert [row["unknown"] for row in rows] == expected["unknown"].tolist()

    status, answer, _ = rest(app, "/v1/models/shared/tiny:predict",
                             {"inputs": {"image_bytes": [b64(path) for path in SMALL[:2]]}}, client="127.0.3.1")
    assert status == 200, answer
    assert answer["outputs"] == {name: [row[name] for row in rows[:2]] for name in rows[0]}

    x = np.stack([np.asarray(preprocess(load_image(path), bundle.preprocessing)) for path in SMALL[:2]])
    status, answer, _ = rest(app, "/v1/models/shared/tiny:predict",
                             {"signature_name": "preprocessed", "instances": x.tolist()}, client="127.0.3.1")
    assert status == 200, answer
    assert np.abs(np.array([row["probabilities"] for row in answer["predictions"]])
                  - expected["probabilities"][:2]).max() <= 1e-5


def test_rest_errors_are_tf_serving_json(app):
    predict = "/v1/models/default:predict"
    cases = [(rest(app, predict, data=b"{not json", client="127.0.4.1"), 400, "JSON"),
             (rest(app, predict, {"instances": [], "inputs": []}, client="127.0.4.1"), 400, "either"),
             (rest(app, predict, {"instances": ["a plain string"]}, client="127.0.4.1"), 400, "b64"),
             (rest(app, predict, {"instances": [{"b64": "aGVsbG8="}]}, client="127.0.4.1"), 400, "not an image"),
             (rest(app, predict, {"instances": [{"b64": "%%%"}]}, client="127.0.4.1"), 400, "base64"),
             (rest(app, predict, {"signature_name": "x", "instances": [1]}, client="127.0.4.1"), 400, "not found"),
             (rest(app, predict, {"signature_name": "preprocessed", "instances": [[1, 2]]}, client="127.0.4.1"),
              400, "shape"),
             (rest(app, predict, method="GET", client="127.0.4.1"), 400, "Malformed request: GET"),
             (rest(app, "/v1/models/default", method="DELETE", client="127.0.4.1"), 400, "Malformed request"),
             (rest(app, "/v1/models/default/versions/1/labels", client="127.0.4.1"), 400, "Malformed request"),
             (rest(app, predict, data=b"[" * 200_000, client="127.0.4.1"), 400, "nested too deeply")]
    for (status, answer, _), expected_status, says in cases:
        assert (status, list(answer)) == (expected_status, ["error"]) and says in answer["error"], answer



def test_rest_corners_as_tf_serving_answers_them(app, bundle):
    """NaN model input, the wrong input name, a row object with a key beside its input, and the one-output
    signature TF Serving's resnet_client.py needs (it takes the argmax of each prediction)."""
    predict, image = "/v1/models/shared/tiny:predict", b64(SMALL[0])
    x = np.zeros((1, *bundle.preprocessing.size, 3), np.float32)
    x[0, 0, 0, 0] = np.nan
    nan_body = json.dumps({"signature_name": "preprocessed", "instances": x.tolist()}).encode()
    assert b"NaN" in nan_body
    cases = [(rest(app, predict, data=nan_body, client="127.0.4.2"), "NaN"),
             (rest(app, predict, {"inputs": {"images": [image]}}, client="127.0.4.2"), '"image_bytes"'),
             (rest(app, predict, {"instances": [{"image_bytes": image, "extra": 1}]}, client="127.0.4.2"), "'extra'"),
             (rest(app, predict, {"signature_name": "preprocessed", "instances": [{"x": 1}]}, client="127.0.4.2"),
              '"image"')]
    for (status, answer, _), says in cases:
        assert status == 400 and list(answer) == ["error"] and says in answer["error"], answer
    status, answer, _ = rest(app, predict, {"instances": [{"image_bytes": image}]}, client="127.0.4.2")
    assert status == 200, answer
    single_output = {"signature_name": "probabilities", "instances": [image]}
    status, single, _ = rest(app, predict, single_output, client="127.0.4.2")
    assert status == 200 and single["predictions"] == [answer["predictions"][0]["probabilities"]], single
    assert bundle.labels[int(np.argmax(single["predictions"][0]))] == answer["predictions"][0]["label"]

def test_a_sessions_own_model_is_not_reachable(app, tiny_bundle):
    """A model trained in a session is that session's: REST callers, who carry none, never reach it."""
    session = app.app.ctx.sessions.get(SimpleNamespace(session_hash="rest-visitor"))
    folder = session.root / "models" / "tiny"
    shutil.copytree(tiny_bundle, folder)
    session.models["mine/tiny"] = folder
    assert app.app.ctx.catalog.resolve(session, "mine/tiny") == folder  # a real key, for its session
    image = {"instances": [b64(SMALL[1])]}
    for status, answer, _ in (rest(app, "/v1/models/mine/tiny", client="127.0.5.1"),
                              rest(app, "/v1/models/mine/tiny:predict", image, client="127.0.5.1")):
        assert status == 404 and answer == {"error": "Servable not found for request: Latest(mine/tiny)"}


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG file whose header declares ``width`` x ``height`` pixels (its data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_oversize_bodies_images_and_batches_are_refused(app):
    predict = "/v1/models/default:predict"
    # A body over the cap is refused from its Content-Length, before it is read: sent whole,
    # the client can meet a closed connection while it still writes, so only the headers go.
    status, answer = _declared_only(app, predict, content_length=3 * 1024 * 1024, client="127.0.6.1")
    assert status == 413 and "request body over" in answer["error"]
    bomb = {"b64": base64.b64encode(_png_claiming(20_000, 20_000)).decode()}
    status, answer, _ = rest(app, predict, {"instances": [bomb]}, client="127.0.6.2")
    assert status == 413 and "too large" in answer["error"], answer
    status, answer, _ = rest(app, predict, {"instances": [b64(SMALL[1])] * 17}, client="127.0.6.3")
    assert status == 413 and "17 images in one request" in answer["error"], answer


def test_each_client_has_its_own_rate_limit(app):
    statuses, retry = [], None
    for _ in range(40):
        status, answer, headers = rest(app, "/v1/models/default", client="127.0.7.1")
        statuses.append(status)
        if status == 429:
            retry = (answer, headers)
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    answer, headers = retry
    assert list(answer) == ["error"] and "too many requests" in answer["error"] and int(headers["Retry-After"]) >= 1
    # Another client is not held back: half a bucket (10) answered at once, where a bucket that
    # every client shared would refuse them (it refills at a few tokens a second).
    assert [rest(app, "/v1/models/default", client="127.0.7.2")[0] for _ in range(10)] == [200] * 10
    # A forwarded-for header from an address that is no trusted proxy names nobody: 40 requests at
    # once, each claiming another client, still share one bucket of 20.
    with ThreadPoolExecutor(40) as pool:
        spoofed = list(pool.map(lambda i: rest(app, "/v1/models/default", client="127.0.7.3",
                                               headers={"X-Forwarded-For": f"10.9.9.{i}"})[0], range(40)))
    assert spoofed.count(429) >= 10, spoofed
    # Behind a proxy (loopback is uvicorn's trusted one): the address it forwards is the client.
    proxied = []
    for _ in range(40):
        proxied.append(rest(app, "/v1/models/default", client="127.0.0.1", headers={"X-Forwarded-For": "10.7.7.1"})[0])
        if proxied[-1] == 429:
            break
    assert proxied[0] == 200 and proxied[-1] == 429, proxied
    assert [rest(app, "/v1/models/default", client="127.0.0.1", headers={"X-Forwarded-For": "10.7.7.2"})[0]
            for _ in range(10)] == [200] * 10



def test_behind_a_proxy_the_hop_it_added_is_the_client(app):
    """Through a real proxy hop on 127.0.0.1 (the trusted one), each visitor is the address the proxy
    appended, whatever it wrote into X-Forwarded-For itself: a new forged entry per request does
    not get one visitor past its bucket, and another visitor behind the same proxy is not held back."""
    from urllib.parse import urlsplit

    from test_proxy import ForwardingProxy, get

    parts = urlsplit(app.url)
    with ForwardingProxy((parts.hostname, parts.port)).running() as proxy:
        statuses = []
        for i in range(40):
            statuses.append(get(proxy.server_address, "/v1/models/default", "127.0.8.1", forged=f"10.8.8.{i}")[0])
            if statuses[-1] == 429:
                break
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        assert get(proxy.server_address, "/v1/models/default", "127.0.8.2", forged="127.0.8.1")[0] == 200

def test_a_body_is_refused_as_soon_as_it_passes_the_limit(app):
    # Chunked: no Content-Length announces the size, so only counting as it streams can refuse it.
    sent = chunked_body(app.url, 32 * 1024 * 1024, source_ip="127.0.10.1")
    assert sent.status == 413, sent
    # Refused ~1.4 MB in; the two sockets' buffers take a few MB more before the sender notices.
    assert sent.sent < 16 * 1024 * 1024, sent


def test_slow_and_stalled_bodies_are_closed(app):
    # One stops after 10 kB of its 1 MB; one trickles 1 kB every 0.5 s, never silent for the 3 s
    # idle bound but far under the 64 KiB/s floor. The server answers 408 and closes both.
    stopped = stalled_bodies(app.url, 1, 1_000_000, source_ip="127.0.11.1", send_bytes=10_000, wait_s=20)
    trickling = stalled_bodies(app.url, 1, 1_000_000, source_ip="127.0.11.2", send_bytes=10_000, wait_s=20,
                               trickle=(1000, 0.5))
    for stalls in (stopped, trickling):
        assert stalls.statuses == [408] and stalls.still_open == 0, stalls


def test_bodies_in_flight_are_bounded_per_client_and_in_total(app):
    a, b, c = "127.0.12.1", "127.0.12.2", "127.0.12.3"
    # 1.2 MB announced each, held open: a client's third is over its 3 MB (429), and the
    # sixth body is over the server's 5 MB (503), whoever sends it.
    stalls = stalled_bodies(app.url, 6, 1_200_000, source_ip=[a, a, a, b, b, c], stagger_s=0.1, wait_s=20)
    assert stalls.statuses == [408, 408, 429, 408, 408, 503] and stalls.still_open == 0, stalls
    # Released with their requests: the same client is answered again, for a 1 MB body (JSON
    # padded with spaces) that the 2.4 MB it held before would have left no room for.
    padded = json.dumps({"instances": [b64(SMALL[1])]}).encode().ljust(1024 * 1024)
    status, answer, _ = rest(app, "/v1/models/shared/tiny:predict", data=padded, client=a)
    assert status == 200, answer
