"""TensorFlow Serving's REST API for the app's models: a client written for TF Serving works
against the app unchanged.

    GET  /v1/models/<name>[/versions/1]             the model's status
    GET  /v1/models/<name>[/versions/1]/metadata    its signatures, as TF Serving shows them
    POST /v1/models/<name>[/versions/1]:predict     {"instances": [...]} or {"inputs": ...}

``<name>`` is a catalog key (resolved by the app's ``ServedModels``): ``default`` or ``shared/<folder>``. A REST
call carries no Gradio session, so a session's own models (``mine/<name>``) are never reachable
here. The signatures are those of the SavedModel export (``vision.export.savedmodel``):
``serving_default`` takes encoded images (``{"b64": ...}``), ``preprocessed`` the model input as
floats; both answer ``probabilities``, ``label`` and, for a model with an "unknown" detector,
``familiarity`` and ``unknown``. Images are decoded by ``load_image`` (its formats and pixel
cap) at the size the app's Classify view uses, then run by the app's cached ``Classifier``.

Every request body is capped at what one upload may be (``AppConfig.max_file_size``, as base64),
counted as it streams, and must keep up a floor rate; the bodies in flight are bounded per client
and in total (``vision.serve.bodies``, ``ServingLimits``). Parsing, decoding, model loading and the
model itself run in worker threads, at most ``ServingLimits.decoders`` requests at once: the event
loop that answers every other visitor only moves bytes. In public mode each client (``vision.serve.
client``) also has a token bucket (one token per image, one per other request, one per 4 MB of
body) and a request holds at most ``ServingLimits.max_instances`` images; a refusal for want of
tokens or room is answered when the client may retry (a second at most). Errors are TF Serving's
``{"error": "..."}`` and name no server path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from gradio.utils import _parse_file_size  # the parser Gradio applies to the same setting
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vision.data.images import input_side, load_image
from vision.errors import ImageTooLargeError, ModelNotFoundError, VisionError
from vision.export.savedmodel import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    TENSOR_INPUT,
    TENSOR_SIGNATURE,
    VERSION,
    output_names,
    signature_defs,
)
from vision.redact import without_paths
from vision.serve.bodies import BodyError, InFlight, declared_length, read_body
from vision.serve.client import client_id
from vision.serve.limits import ServingLimits, TokenBuckets
from vision.serve.models import PRIVATE_PREFIX, ServedModels

log = logging.getLogger("vision.app")
#: ``<name>[/versions/<n>][/metadata | :<verb>]``: the shortest name that leaves a valid tail.
_PATH = re.compile(r"^(?P<name>.+?)(?:/versions/(?P<version>[^/:]+))?(?P<verb>/metadata|:[a-z]+)?$")
#: Refusals (429) held back a second at once, per client (``ServingAPI._slow_refusal``).
REFUSALS_HELD = 8
#: ``serving_default`` but answering only ``probabilities`` (``export --single-output`` as a signature):
#: TF Serving's ``resnet_client.py`` takes the argmax of each prediction, which needs a list, not an object.
SINGLE_SIGNATURE = "probabilities"
SIGNATURES = (BYTES_SIGNATURE, TENSOR_SIGNATURE, SINGLE_SIGNATURE)
#: Base64 characters decoded per call (a multiple of 4): about 4 ms of holding the interpreter.
B64_SLICE = 1024 * 1024
WEB_SAFE = str.maketrans("-_", "+/")


class RestError(Exception):
    """An answer other than 200: its HTTP status and TF Serving's ``{"error": ...}`` text."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 wait_s: float = 1.0) -> None:
        super().__init__(message)
        self.status, self.headers, self.wait_s = status, headers or {}, wait_s


class ServingAPI:
    """The REST endpoint's handler (one per app)."""

    def __init__(self, models: ServedModels, limits: ServingLimits) -> None:
        self.models, self.limits = models, limits
        self.buckets = TokenBuckets(self.limits.images_per_s, self.limits.burst)
        self.in_flight = InFlight(self.limits.client_bytes, self.limits.total_bytes)
        # Bound to the server's loop at its first use (Python >= 3.10), not here.
        self._decoders = asyncio.Semaphore(self.limits.decoders)
        self._held_refusals: Counter[str] = Counter()
        upload = _parse_file_size(models.max_file_size)
        # One upload's worth of image, as base64 (4 characters per 3 bytes), plus the JSON around it.
        self.max_body = None if upload is None else math.ceil(upload * 4 / 3) + 64 * 1024

    async def handle(self, request: Request) -> JSONResponse:
        """Answer one request to ``/v1/models/...``."""
        # A POST refused before its body was read whole leaves the rest of it on the socket:
        # "Connection: close" makes uvicorn close it instead of reading on for the next request.
        closing = {"Connection": "close"} if request.method == "POST" else {}
        try:
            return NaNJSONResponse(await self._answer(request))
        except BodyError as error:
            if error.status == 429:
                await self._slow_refusal(client_id(request.scope), 1.0)
            return JSONResponse({"error": str(error)}, status_code=error.status, headers=closing)
        except RestError as error:
            shown = without_paths(str(error))
            log.debug("visitor sees: %s", shown)
            if error.status == 429:
                await self._slow_refusal(client_id(request.scope), error.wait_s)
            return JSONResponse({"error": shown}, status_code=error.status, headers={**error.headers, **closing})
        except Exception as error:  # a bug: logged in full, the caller gets its type only
            log.exception("REST request %s failed", request.url.path)
            return JSONResponse({"error": f"Something went wrong ({type(error).__name__}); see the server log."},
                                status_code=500, headers=closing)

    async def _slow_refusal(self, client: str, wait_s: float) -> None:
        """Hold a 429 until the client may retry, a second at most. A client that ignores Retry-After and
        asks again at once made hundreds of refused requests a second per connection, each a trip
        through the whole ASGI stack; held, it makes one. At most ``REFUSALS_HELD`` a client wait
        (a held refusal is a connection and a task, and uvicorn reads no more of its body)."""
        if self._held_refusals[client] >= REFUSALS_HELD:
            return
        self._held_refusals[client] += 1
        try:
            await asyncio.sleep(min(wait_s, 1.0))
        finally:
            self._held_refusals[client] -= 1
            if not self._held_refusals[client]:
                del self._held_refusals[client]

    async def _answer(self, request: Request) -> dict[str, Any]:
        client = client_id(request.scope)
        self._charge(client, 1)
        match = _PATH.match(request.path_params["rest"])
        verb = (match["verb"] or "") if match else ""
        # TF Serving answers a path or method it does not serve with 400 "Malformed request".
        if (match is None or "/versions/" in match["name"]
                or request.method != ("POST" if verb.startswith(":") else "GET")):
            # Written without slashes: the visitor's text is cut at anything that looks like a path.
            raise RestError(400, f"Malformed request: {request.method[:10]} {request.path_params['rest'][:200]} "
                                 "(this server answers GET for a model's status and metadata, POST for :predict)")
        name, version = match["name"], match["version"]
        folder = await run_in_threadpool(self._resolve, name, version)  # the disk, maybe a bundle's files
        if verb == "":
            return {"model_version_status": [{"version": str(VERSION), "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]}
        if verb == "/metadata":
            return await run_in_threadpool(self._metadata, name, folder)
        if verb != ":predict":
            raise RestError(400, f"this server answers :predict only, not {verb}")
        # The body counts as in flight from its first byte (its whole Content-Length, when
        # declared) until the answer is made: the JSON, the base64 and the pixels made from it
        # are bounded with it.
        declared = declared_length(request.scope["headers"])
        if declared is not None:  # refused before a byte is read when the client has spent its share
            self._charge(client, self._body_cost(declared))
        with self.in_flight.hold(client) as held:
            # In a list the worker can empty: the raw body is freed once parsed, not when the answer is.
            body = [await read_body(request.receive, self.max_body, self.limits.pace, declared=declared,
                                    held=held, too_large=str(self._too_large()))]
            if declared is None:
                self._charge(client, self._body_cost(len(body[0])))
            async with self._decoders:
                return await run_in_threadpool(self._predict_body, body, folder, client)

    def _predict_body(self, body: list[bytearray], folder: Path, client: str) -> dict[str, Any]:
        """Parse, decode and run one :predict body (in a worker thread)."""
        payload = _parse_json(body.pop())
        signature, images = self._instances(payload, folder)
        self._charge(client, len(images) - 1)
        return self._predict(folder, signature, images, "instances" in payload)

    def _body_cost(self, size: int) -> int:
        """Tokens for a body of ``size`` bytes: parsing and decoding it holds the interpreter
        (about 8 ms a MB), so big bodies are paid like images. Never over the bucket's size,
        or the largest body allowed could never be granted."""
        return min(self.limits.burst - 1, size // self.limits.bytes_per_token)

    def _charge(self, client: str, cost: int) -> None:
        if not self.models.public or cost <= 0:
            return
        wait = self.buckets.take(client, cost)
        if wait:
            raise RestError(429, f"too many requests from this client: {self.limits.images_per_s:g} images a "
                            f"second at most; retry in {wait:.1f} s", {"Retry-After": str(math.ceil(wait))}, wait)

    def _resolve(self, name: str, version: str | None) -> Path:
        not_found = RestError(404, f"Servable not found for request: "
                                   f"{f'Specific({name[:80]}, {version[:20]})' if version else f'Latest({name[:80]})'}")
        if name.startswith(PRIVATE_PREFIX) or version not in (None, str(VERSION)):
            raise not_found
        try:
            return self.models.resolve(name)
        except ModelNotFoundError:
            raise not_found from None

    def _metadata(self, name: str, folder: Path) -> dict[str, Any]:
        bundle = self.models.bundle(folder)
        detector = bundle.info.get("ood")
        return {"model_spec": {"name": name, "signature_name": "", "version": str(VERSION)},
                "metadata": {"signature_def": {"signature_def": signature_defs(bundle)},
                             # Not in TF Serving's answer (clients ignore what they do not know):
                             # what the outputs mean, so a client needs no other file.
                             "vision": {"name": bundle.name, "labels": bundle.labels,
                                        "preprocessing": bundle.preprocessing.to_dict(),
                                        "unknown": ({k: detector[k] for k in ("method", "threshold")}
                                                    if detector else None)}}}

    def _too_large(self) -> RestError:
        return RestError(413, f"request body over {self.max_body:,} bytes: the limit for one image "
                              f"({self.models.max_file_size}, base64-encoded)")

    def _instances(self, payload: Any, folder: Path) -> tuple[str, list[Any]]:
        """The signature asked for, and its input for each instance (bytes or a float array)."""
        if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
            raise RestError(400, "the body must be a JSON object with either \"instances\" or \"inputs\"")
        signature = payload.get("signature_name") or BYTES_SIGNATURE
        if signature not in SIGNATURES:
            raise RestError(400, f"Serving signature name: \"{str(signature)[:80]}\" not found in signature def; "
                                 f"choose {', '.join(SIGNATURES)}")
        input_name = TENSOR_INPUT if signature == TENSOR_SIGNATURE else BYTES_INPUT
        if "instances" in payload:
            rows = payload["instances"]
            if not isinstance(rows, list):
                raise RestError(400, "\"instances\" must be a list, one item per image")
            # One named input: an item is its value, or an object naming it (and nothing else).
            values = [_named(row, input_name, f"instance {index}") for index, row in enumerate(rows)]
        else:
            values = _named(payload["inputs"], input_name, "\"inputs\"")
            if not isinstance(values, list):
                raise RestError(400, f"\"inputs\" must be a list, one item per image, or {{\"{input_name}\": [...]}}")
        if not values:
            raise RestError(400, "no images in the request")
        if self.models.public and len(values) > self.limits.max_instances:
            raise RestError(413, f"{len(values)} images in one request; this server takes {self.limits.max_instances}")
        if signature != TENSOR_SIGNATURE:
            return signature, [_image_bytes(value, index) for index, value in enumerate(values)]
        size = (*self.models.bundle(folder).preprocessing.size, 3)
        return signature, [_model_input(value, index, size) for index, value in enumerate(values)]

    def _predict(self, folder: Path, signature: str, images: list[Any], rows: bool) -> dict[str, Any]:
        classifier = self.models.classifier(folder)
        if signature != TENSOR_SIGNATURE:
            side = input_side(classifier.preprocessing.size)
            answers = []
            for index, data in enumerate(images):
                try:
                    pixels = load_image(data, max_side=side)  # decoded as the Classify view does
                except VisionError as error:
                    status = 413 if isinstance(error, ImageTooLargeError) else 400
                    raise RestError(status, f"instance {index}: {error}") from None
                answers.append(classifier.scores(pixels))
            probabilities = np.stack([p for p, _ in answers])
            familiarity = None if answers[0][1] is None else np.array([f for _, f in answers], np.float32)
        else:
            # The compiled Keras path, which takes model input as it is (TFLite's has preprocessing built in).
            probabilities, familiarity = classifier.scores_batch(np.stack(images))
        outputs: dict[str, Any] = {"probabilities": probabilities.tolist(),
                                   "label": [classifier.labels[i] for i in probabilities.argmax(axis=1)]}
        if familiarity is not None:
            outputs.update(familiarity=familiarity.tolist(),
                           unknown=(familiarity < classifier.detector.threshold).tolist())
        outputs = {name: outputs[name] for name in output_names(classifier.bundle) if name in outputs}
        if signature == SINGLE_SIGNATURE:  # one output: TF Serving leaves its name out of every answer
            return {"predictions": outputs["probabilities"]} if rows else {"outputs": outputs["probabilities"]}
        if rows:
            return {"predictions": [dict(zip(outputs, values)) for values in zip(*outputs.values())]}
        return {"outputs": outputs}


def _named(value: Any, input_name: str, where: str) -> Any:
    """``value`` itself, or the value of ``{input_name: value}``; an object naming other keys beside
    (or instead of, when it is not an image's ``{"b64": ...}``) the input is refused, naming it."""
    if not isinstance(value, dict) or set(value) == {"b64"}:
        return value
    if set(value) != {input_name}:
        extra = sorted(str(key)[:40] for key in value if key != input_name)[:5]
        raise RestError(400, f"{where}: this signature has one input, \"{input_name}\"; "
                             f"unexpected {', '.join(repr(key) for key in extra)}")
    return value[input_name]


class NaNJSONResponse(JSONResponse):
    """JSON as TF Serving writes it: a NaN or infinite output is ``NaN``/``Infinity``, not a 500
    (Starlette's ``JSONResponse`` refuses them)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode("utf-8")


def _parse_json(body: bytearray) -> Any:
    try:
        return json.loads(body)  # Python's json takes NaN and Infinity, as TF Serving does
    except (ValueError, UnicodeDecodeError) as error:
        raise RestError(400, f"JSON Parse error: {str(error)[:200]}") from None
    except RecursionError:
        raise RestError(400, "JSON Parse error: nested too deeply") from None


def _image_bytes(value: Any, index: int) -> bytes:
    if not (isinstance(value, dict) and isinstance(value.get("b64"), str)):
        raise RestError(400, f"instance {index}: expected \"{BYTES_INPUT}\", each image as "
                             f"{{\"b64\": \"<base64 of the file>\"}} "
                             f"(or model input with \"signature_name\": \"{TENSOR_SIGNATURE}\")")
    try:
        return _b64decode(value["b64"])
    except (binascii.Error, ValueError):
        raise RestError(400, f"instance {index}: \"b64\" is not valid base64") from None


def _b64decode(text: str) -> bytes:
    """``text`` decoded, in either alphabet (``-_`` as TF Serving's web-safe clients send it), padding optional.

    In slices: one ``binascii`` call holds the interpreter for all of its input (~4 ms a MB), and a
    64 MB image decoded in one call stopped every other thread, the event loop included, for a
    quarter of a second. Between slices other threads run.
    """
    text += "=" * (-len(text) % 4)
    decoded = bytearray()
    for start in range(0, len(text), B64_SLICE):
        piece = text[start:start + B64_SLICE]
        if "=" in piece[:-2] or (start + B64_SLICE < len(text) and "=" in piece):
            raise ValueError("padding inside the data")  # one call on the whole text would refuse it too
        if "-" in piece or "_" in piece:
            piece = piece.translate(WEB_SAFE)
        decoded += base64.b64decode(piece, validate=True)
    return bytes(decoded)


def _model_input(value: Any, index: int, size: tuple[int, int, int]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != size:
        raise RestError(400, f"instance {index}: expected \"{TENSOR_INPUT}\", numbers of shape {list(size)}")
    if not np.isfinite(array).all():  # a model's answer to NaN is NaN: say why instead
        raise RestError(400, f"instance {index}: \"{TENSOR_INPUT}\" holds NaN or Infinity; the model input "
                             "is finite numbers")
    return array


def serving_routes(api: ServingAPI) -> list[Route]:
    """The routes of TF Serving's REST API over ``api``, for the FastAPI app Gradio creates (``vision.ui.static``)."""
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]  # any other: 400 as TF Serving answers
    return [Route("/v1/models/{rest:path}", api.handle, methods=methods, name="tf-serving")]
