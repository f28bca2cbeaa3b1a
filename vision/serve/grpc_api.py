"""TensorFlow Serving's gRPC API for the app's models: ``PredictionService.Predict`` and
``GetModelMetadata``, ``ModelService.GetModelStatus``, as ``tensorflow_serving.apis`` declares them,
so a client written for TF Serving (its ``resnet_client_grpc.py``) works against the app unchanged.

The models, signatures, versions, guards and per-client token buckets are the REST API's
(``vision.serve.rest.ServingAPI``, the same object when the app passes it): ``serving_default``
takes encoded images (``DT_STRING``), ``preprocessed`` the model input (``DT_FLOAT``), and
``probabilities`` is ``serving_default`` answering probabilities only. A message is capped at the
REST body limit by gRPC itself before it is parsed; the model runs in the server's worker threads,
``ServingLimits.decoders`` at once, with at most 4x that many calls admitted (the rest get
``RESOURCE_EXHAUSTED``). Errors are gRPC status codes with TF Serving's texts.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from vision.export.savedmodel import BYTES_INPUT, BYTES_SIGNATURE, TENSOR_INPUT, TENSOR_SIGNATURE, VERSION
from vision.redact import without_paths
from vision.serve.client import client_address, normalize
from vision.serve.rest import SIGNATURES, RestError, ServingAPI, _model_input

log = logging.getLogger("vision.app")
#: REST statuses as gRPC codes (TF Serving answers a bad request INVALID_ARGUMENT, a missing model NOT_FOUND).
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
         413: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED}


def grpc_client(context: grpc.ServicerContext) -> str:
    """The client a call counts against: its peer, or the hop a trusted proxy forwarded
    (``vision.serve.client``: the same rule as HTTP)."""
    peer = context.peer() or ""  # "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678"
    kind, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else rest
    hops = [hop.strip() for key, value in context.invocation_metadata() if key == "x-forwarded-for"
            for hop in str(value).split(",") if hop.strip()]
    return normalize(client_address(host, hops))


class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """Both services over one ``ServingAPI``."""

    def __init__(self, api: ServingAPI) -> None:
        self.api = api

    def _call(self, context: grpc.ServicerContext, answer: Any) -> Any:
        try:
            self.api._charge(grpc_client(context), 1)
            return answer()
        except RestError as error:
            context.abort(CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT), without_paths(str(error)))
        except Exception as error:  # a bug: logged in full, the caller gets its type only
            log.exception("gRPC call failed")
            context.abort(grpc.StatusCode.INTERNAL,
                          f"Something went wrong ({type(error).__name__}); see the server log.")

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call(context, lambda: self._predict(request, grpc_client(context)))

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call(context, lambda: self._metadata(request))

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def status() -> Any:
            self._folder(request.model_spec)
            answer = get_model_status_pb2.GetModelStatusResponse()
            version = answer.model_version_status.add()
            version.version, version.state = VERSION, get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return answer
        return self._call(context, status)

    def _folder(self, spec: Any) -> Any:
        version = str(spec.version.value) if spec.HasField("version") else None
        return self.api._resolve(spec.name, version)

    def _metadata(self, request: Any) -> Any:
        if list(request.metadata_field) != ["signature_def"]:
            raise RestError(400, "Metadata field signature_def is the one this server answers")
        folder = self._folder(request.model_spec)
        defs = self.api._metadata(request.model_spec.name, folder)["metadata"]["signature_def"]
        answer = get_model_metadata_pb2.GetModelMetadataResponse()
        answer.model_spec.name, answer.model_spec.version.value = request.model_spec.name, VERSION
        signatures = json_format.ParseDict(defs, get_model_metadata_pb2.SignatureDefMap())
        answer.metadata["signature_def"].Pack(signatures)
        return answer

    def _predict(self, request: predict_pb2.PredictRequest, client: str) -> predict_pb2.PredictResponse:
        folder = self._folder(request.model_spec)
        signature = request.model_spec.signature_name or BYTES_SIGNATURE
        if signature not in SIGNATURES:
            raise RestError(400, f"Serving signature name: \"{signature[:80]}\" not found in signature def; "
                                 f"choose {', '.join(SIGNATURES)}")
        input_name = TENSOR_INPUT if signature == TENSOR_SIGNATURE else BYTES_INPUT
        if set(request.inputs) != {input_name}:
            raise RestError(400, f"this signature has one input, \"{input_name}\"; got "
                                 f"{', '.join(repr(key[:40]) for key in list(request.inputs)[:5]) or 'none'}")
        tensor = request.inputs[input_name]
        dims = [dim.size for dim in tensor.tensor_shape.dim]
        if not dims or dims[0] < 1:
            raise RestError(400, "no images in the request")
        if self.api.models.public and dims[0] > self.api.limits.max_instances:
            raise RestError(400, f"{dims[0]} images in one request; this server takes {self.api.limits.max_instances}")
        if signature == TENSOR_SIGNATURE:
            values = _floats(tensor, dims, (*self.api.models.bundle(folder).preprocessing.size, 3))
        else:
            if tensor.dtype != types_pb2.DT_STRING or len(tensor.string_val) != dims[0] or len(dims) != 1:
                raise RestError(400, f"expected \"{BYTES_INPUT}\": DT_STRING of shape [n], one encoded image each")
            values = list(tensor.string_val)
        self.api._charge(client, len(values) - 1)
        outputs = self.api._predict(folder, signature, values, rows=False)["outputs"]
        answer = predict_pb2.PredictResponse()
        answer.model_spec.name, answer.model_spec.version.value = request.model_spec.name, VERSION
        answer.model_spec.signature_name = signature
        for name, value in (outputs.items() if isinstance(outputs, dict) else [("probabilities", outputs)]):
            answer.outputs[name].CopyFrom(_tensor(np.asarray(value)))
        return answer


def _floats(tensor: tensor_pb2.TensorProto, dims: list[int], size: tuple[int, int, int]) -> list[np.ndarray]:
    if tensor.dtype != types_pb2.DT_FLOAT or tuple(dims[1:]) != size:
        raise RestError(400, f"expected \"{TENSOR_INPUT}\": DT_FLOAT of shape [n, {', '.join(map(str, size))}]")
    count = int(np.prod(dims))  # bounded: the message itself is capped in size
    array = (np.frombuffer(tensor.tensor_content, np.float32) if tensor.tensor_content
             else np.asarray(tensor.float_val, np.float32))
    if array.size != count:
        raise RestError(400, f"\"{TENSOR_INPUT}\" holds {array.size} numbers, its shape {dims} {count}")
    return [_model_input(image, index, size) for index, image in enumerate(array.reshape(dims))]


def _tensor(value: np.ndarray) -> tensor_pb2.TensorProto:
    """``value`` as a TensorProto (float32, bool or strings), as ``tf.make_tensor_proto`` writes it."""
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in value.shape])
    if value.dtype.kind in "UO":
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                      string_val=[str(item).encode() for item in value.ravel()])
    if value.dtype == bool:
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_BOOL, tensor_shape=shape, bool_val=value.ravel().tolist())
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape,
                                  tensor_content=np.ascontiguousarray(value, np.float32).tobytes())


def start_grpc(api: ServingAPI, port: int, host: str = "[::]") -> grpc.Server:
    """Serve ``api`` over gRPC on ``host:port``; returns the started server (``stop(grace)`` ends it)."""
    workers = api.limits.decoders
    limit = api.max_body or 64 * 1024 * 1024
    server = grpc.server(futures.ThreadPoolExecutor(workers, thread_name_prefix="grpc"),
                         maximum_concurrent_rpcs=4 * workers,
                         options=[("grpc.max_receive_message_length", limit)])
    servicer = Servicer(api)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"gRPC could not listen on port {port}")
    server.start()
    return server
