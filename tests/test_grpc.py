"""TF Serving's gRPC API, through a client written as TF Serving's ``resnet_client_grpc.py`` is: a
``PredictRequest`` holding ``tf.make_tensor_proto`` of the JPEG bytes, against the server
``app.py --grpc-port`` starts (``vision.ui.serving.start_grpc_server``) in public mode."""

from __future__ import annotations

import io
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from app_server import free_port
from conftest import SHAPES_MODEL


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vision.serve.limits import ServingLimits
    from vision.ui.config import AppConfig
    from vision.ui.serving import start_grpc_server

    models = tmp_path_factory.mktemp("grpc") / "models"
    shutil.copytree(SHAPES_MODEL, models / "shapes")
    config = AppConfig(default_model=models / "shapes", models_dir=models, public=True, max_file_size="1mb",
                       state_dir=models.parent / "state", serving=ServingLimits(burst=10))
    port = free_port()
    started = start_grpc_server(config, port, "127.0.0.1")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, models / "shapes"
    channel.close()
    started.stop(None)


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    pixels[8:40, 8:40] = (220, 40, 40)  # a square, as the shapes model knows them
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def predict(channel, name: str, data, signature: str = "serving_default", input_name: str = "image_bytes",
            client: str = "10.1.0.1"):
    """As resnet_client_grpc.py does it (plus the proxy's forwarded-for, to be one client of many)."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(data, shape=[len(data)] if signature != "preprocessed"
                                                             else None))
    return stub.Predict(request, 30.0, metadata=[("x-forwarded-for", client)])


def test_predict_answers_as_the_library(server):
    from vision.bundle.store import load_bundle
    from vision.data.images import input_side, load_image, preprocess
    from vision.runtime.inference import Classifier

    channel, folder = server
    images = [jpeg(0), jpeg(1)]
    result = predict(channel, "default", images)
    probabilities = tf.make_ndarray(result.outputs["probabilities"])
    library = Classifier(load_bundle(folder))
    side = input_side(library.preprocessing.size)
    expected = np.stack([library.scores(load_image(data, max_side=side))[0] for data in images])
    assert probabilities.shape == expected.shape and np.abs(probabilities - expected).max() <= 1e-5
    labels = [label.decode() for label in tf.make_ndarray(result.outputs["label"])]
    assert labels == [library.labels[i] for i in expected.argmax(axis=1)]
    # The one-output signature and the float one answer the same.
    single = predict(channel, "default", images, signature="probabilities")
    assert list(single.outputs) == ["probabilities"]
    x = np.stack([np.asarray(preprocess(load_image(data, max_side=side), library.preprocessing)) for data in images])
    floats = predict(channel, "default", x.astype(np.float32), signature="preprocessed", input_name="image")
    assert np.abs(tf.make_ndarray(floats.outputs["probabilities"]) - expected).max() <= 1e-4


def test_status_and_metadata(server):
    channel, _ = server
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "default"}), 30.0)
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "default"},
                                                            metadata_field=["signature_def"])
    answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, 30.0)
    defs = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata["signature_def"].Unpack(defs)
    assert set(defs.signature_def) == {"serving_default", "preprocessed"}
    assert list(defs.signature_def["serving_default"].inputs) == ["image_bytes"]


@pytest.mark.parametrize("name, data, signature, input_name, code, says", [
    ("mine/shapes", [b"x"], "serving_default", "image_bytes", grpc.StatusCode.NOT_FOUND, "Servable not found"),
    ("nothing", [b"x"], "serving_default", "image_bytes", grpc.StatusCode.NOT_FOUND, "Latest(nothing)"),
    ("default", [b"x"], "serving_default", "images", grpc.StatusCode.INVALID_ARGUMENT, '"image_bytes"'),
    ("default", [b"not an image"], "serving_default", "image_bytes", grpc.StatusCode.INVALID_ARGUMENT, "instance 0"),
    ("default", [b"x"], "nope", "image_bytes", grpc.StatusCode.INVALID_ARGUMENT, "not found in signature def"),
    ("default", [b"x"] * 17, "serving_default", "image_bytes", grpc.StatusCode.INVALID_ARGUMENT, "takes 16"),
    ("default", [b"x" * (2 << 20)], "serving_default", "image_bytes", grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
])
def test_errors_are_status_codes(server, name, data, signature, input_name, code, says):
    with pytest.raises(grpc.RpcError) as caught:
        predict(server[0], name, data, signature, input_name, client="10.2.0.1")
    assert caught.value.code() == code and says in caught.value.details(), caught.value.details()


def test_each_client_has_its_own_rate_limit(server):
    codes = []
    for _ in range(30):
        try:
            predict(server[0], "default", [jpeg(2)], client="10.3.0.1")
            codes.append("OK")
        except grpc.RpcError as error:
            codes.append(error.code().name)
            break
    assert codes[0] == "OK" and codes[-1] == "RESOURCE_EXHAUSTED", codes
    assert predict(server[0], "default", [jpeg(2)], client="10.3.0.2").outputs["probabilities"]
