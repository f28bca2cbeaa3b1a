"""Genuine Teachable Machine (TM) image exports, made with TM's own code, offline.

TM's exports cannot be downloaded here, so the tests make them the way TM does:

* **TF.js** (``model.json`` + ``weights.bin`` + ``metadata.json``): TM's own library,
  ``@teachablemachine/image`` 0.8.5 on the TF.js 1.3.1 it peers on (``tests/teachable/``, from npm
  at set-up), runs in headless Chromium: ``createTeachable``, ``setLabels``, ``addExample`` per
  image, ``train``, then ``save`` through TF.js's ``tf.io.withSaveHandler`` and ``getMetadata()``.
  ``createTeachable`` fetches a MobileNetV2 (alpha 0.35, 224 px, no top) from Google storage;
  Playwright's request routing answers that URL with one built here: Keras's MobileNetV2 as Google
  stored it (with ``Conv1_pad``), seeded random weights (no ImageNet download is possible),
  converted with tensorflowjs. Every other request is answered from local files or refused.
* **Keras** (``keras_model.h5`` + ``labels.txt``): tensorflowjs's converter
  (``tfjs_layers_model`` → ``keras``, on ``tf_keras`` 2.19), then the h5's metadata in the form TM's
  converter (tf.keras 2.4) writes: see ``make_tm_keras_export``.
* **TFLite** (``model_unquant.tflite`` or ``model.tflite`` + ``labels.txt``): TF's ``TFLiteConverter``
  on that h5 loaded with tf_keras; the quantized one is full integer with uint8 input and output.

The tf_keras / tensorflowjs steps run in a subprocess (``tests/teachable/tf_keras_worker.py``) so
that this process stays on Keras 3.

``tm_predict_in_chromium`` loads any TM-format folder with TM's ``tmImage.load`` and returns its
``predict`` probabilities: the reference for import parity and for checking our own export back to
TM's format. For parity use 224×224 PNGs (``make_class_images`` writes them): TM's ``cropTo`` then
draws the image at scale 1 and ``capture``'s centre crop keeps every pixel, so TM's preprocessing is
exactly ``x / 127 - 1`` on the decoded pixels, with no browser resampling in between.

TF.js runs on its ``cpu`` backend by default: plain float32 JavaScript, so the browser side is
deterministic and comparable to Python at 1e-4 (WebGL on SwiftShader differed by ~2e-6 here, and
compiles its shaders first).

In a test module, bind the session fixtures by assignment (pytest finds them by name)::

    import teachable_fixtures
    tm_base_mobilenet = teachable_fixtures.tm_base_mobilenet
    tm_exports = teachable_fixtures.tm_exports

    def test_import(tm_exports):
        zip_path = tm_exports["keras_zip"]              # or "tflite_zip", "tfjs_zip", ...
        reference = np.load(tm_exports["tm_probs"])     # TM's library on probe_images(tm_exports)
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from browser import launch_chromium

TEACHABLE = Path(__file__).resolve().parent / "teachable"
NODE_MODULES = TEACHABLE / "node_modules"
WORKER = TEACHABLE / "tf_keras_worker.py"
TFJS_SCRIPT = NODE_MODULES / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
TM_SCRIPT = NODE_MODULES / "@teachablemachine" / "image" / "dist" / "teachablemachine-image.min.js"

#: What ``createTeachable(..., {version: 2, alpha: 0.35})`` fetches (custom-mobilenet.ts,
#: ``parseModelOptions``); its weights sit beside it.
MOBILENET_V2_URL = ("https://storage.googleapis.com/teachable-machine-models/"
                    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top/model.json")
#: A made-up origin the page is served from: Playwright's routing answers it, nothing listens there.
ORIGIN = "http://teachable.test"
IMAGE_SIZE = 224
#: TM's site's training defaults (epochs 50, batch 16, learning rate 0.001, 100 dense units).
TM_TRAINING = {"denseUnits": 100, "epochs": 50, "learningRate": 0.001, "batchSize": 16}
#: Passed to createTeachable as TM's site does; fillMetadata adds the rest. TM's site version is
#: not published; this is a recent-looking value, recorded so tests can check it came through.
TM_VERSION = "2.4.7"
TM_MODEL_NAME = "tm-my-image-model"
#: The names of the zips TM's site hands out (its Export panel).
KERAS_ZIP = "converted_keras.zip"
TFLITE_ZIP = "converted_tflite.zip"
TFLITE_QUANTIZED_ZIP = "converted_tflite_quantized.zip"
TFJS_ZIP = "tm-my-image-model.zip"
#: Class names with spaces, as TM users type them (labels.txt keeps them after the index).
CLASS_NAMES = ("red stripes", "blue checks", "green dots")


# --------------------------------------------------------------------------- images

#: Per-image colour shift (± per channel) and pixel noise (standard deviation), in 0-255 levels.
_TINT, _NOISE = 5, 1
#: Where the green dots sit (one seeded layout: centres in pixels), so that only jitter varies.
_DOTS = np.random.default_rng(12).uniform(16, IMAGE_SIZE - 16, size=(10, 2))


def _pattern(kind: int, rng: np.random.Generator) -> np.ndarray:
    """One 224×224 RGB uint8 image of pattern ``kind``: a fixed geometry with a slight seeded tint,
    a few pixels of shift (dots only) and pixel noise.

    A MobileNet with random weights is very sensitive to where edges fall against its stride-32
    grid (shifting stripes by half a period moves its pooled features as far as changing the
    class), so the geometry stays put; then TM's head is confidently right on held-out images and
    uint8 quantization keeps its top-1."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    tint = rng.uniform(-_TINT, _TINT, size=3)
    if kind == 0:  # red horizontal stripes on a dark ground
        on = (np.sin(yy * 2 * np.pi / 20) > 0)[..., None]
        image = np.where(on, np.array([210, 40, 40]) + tint, np.array([40, 20, 20]))
    elif kind == 1:  # blue and white checks
        on = (((xx // 24) + (yy // 24)) % 2 == 0)[..., None]
        image = np.where(on, np.array([40, 70, 220]) + tint, np.array([235, 235, 235]))
    else:  # green dots on a pale ground
        image = np.broadcast_to(np.array([230, 225, 200], dtype=np.float64), (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
        for cx, cy in _DOTS + rng.uniform(-3, 3, size=_DOTS.shape):
            image[(xx - cx) ** 2 + (yy - cy) ** 2 < 18 ** 2] = np.array([30, 160, 60]) + tint
    image = image + rng.normal(0, _NOISE, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_class_images(out_dir: Path, classes: int = 2, per_class: int = 4, seed: int = 0,
                      labels: tuple[str, ...] = CLASS_NAMES) -> dict[str, list[Path]]:
    """Write ``per_class`` seeded 224×224 PNGs for each of the first ``classes`` patterns
    (``out_dir/<label>/NN.png``); returns ``{label: [paths]}`` in class order.

    PNG (lossless, no colour profile) so that Chromium decodes exactly the pixels Python holds.
    """
    from PIL import Image

    if not 2 <= classes <= len(labels):
        raise ValueError(f"classes must be between 2 and {len(labels)}")
    rng = np.random.default_rng(seed)
    found: dict[str, list[Path]] = {}
    for kind, label in enumerate(labels[:classes]):
        folder = Path(out_dir) / label
        folder.mkdir(parents=True, exist_ok=True)
        found[label] = []
        for i in range(per_class):
            path = folder / f"{i:02d}.png"
            Image.fromarray(_pattern(kind, rng)).save(path)
            found[label].append(path)
    return found


def load_pixels(paths: list[Path]) -> np.ndarray:
    """The images as one uint8 ``(n, 224, 224, 3)`` array (what TM's library sees for 224 px PNGs)."""
    from PIL import Image

    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if any(p.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) for p in pixels):
        raise ValueError("parity images must be 224×224: TM would resize them in the browser")
    return np.stack(pixels)


def tm_preprocess(pixels: np.ndarray) -> np.ndarray:
    """TM's input scaling for 224×224 images (``capture`` in utils/tf.ts): ``x / 127 - 1``."""
    return pixels.astype(np.float32) / 127.0 - 1.0


# --------------------------------------------------------------------------- tf_keras worker

def _run_worker(*jobs: list[str], timeout: float = 600) -> None:
    """Run tf_keras_worker.py once per job list in ONE process each call (TensorFlow's import is
    most of the time). Raises with the worker's stderr tail on failure."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(WORKER), json.dumps([list(map(str, job)) for job in jobs])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"tf_keras worker failed ({jobs}):\n{done.stderr[-4000:]}")


def build_base_mobilenet(out_dir: Path, calibration: list[Path], seed: int = 0) -> Path:
    """The truncated MobileNetV2 (alpha 0.35, 224 px, no top, last layer ``out_relu``) that TM
    fetches, with seeded random weights and BatchNorm statistics set from ``calibration`` images,
    as a TF.js layers model in ``out_dir``; returns ``out_dir/model.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        calibration_npy = Path(scratch) / "calibration.npy"
        np.save(calibration_npy, load_pixels(calibration))
        _run_worker(["base", out_dir, seed, calibration_npy])
    model_json = out_dir / "model.json"
    saved = json.loads(model_json.read_text())
    # TF.js 1.3.1 knows a nested functional model only by its Keras 2.2 class name, "Model"
    # (Keras ≥ 2.4 writes "Functional"); the file TM fetches predates the rename.
    if saved["modelTopology"]["model_config"]["class_name"] == "Functional":
        saved["modelTopology"]["model_config"]["class_name"] = "Model"
        model_json.write_text(json.dumps(saved))
    return model_json


def tf_keras_predict(h5: Path, images: list[Path]) -> np.ndarray:
    """Probabilities from ``tf_keras.models.load_model(h5, compile=False)`` (TM's Keras snippet)
    on ``x / 127 - 1``, computed in the worker; ``(n, classes)`` float32."""
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch) / "in.npy", load_pixels(images))
        _run_worker(["predict", Path(h5), Path(scratch) / "in.npy", Path(scratch) / "out.npy"])
        return np.load(Path(scratch) / "out.npy")


# --------------------------------------------------------------------------- Chromium

#: The page: TF.js 1.3.1, then TM's bundle (which expects the global ``tf``), as TM's snippet has it.
_PAGE = (b'<!doctype html><meta charset="utf-8"><body>'
         b'<script src="/tf.min.js"></script><script src="/teachablemachine-image.min.js"></script>')


def _route_files(files: dict[str, Path | bytes], requests: list[str]):
    """A Playwright route handler: answer each URL in ``files`` from disk (or the bytes given),
    refuse all others (recorded in ``requests`` either way), so nothing ever leaves the machine.
    ``files`` is read at request time: entries added later are served too."""
    def handle(route) -> None:
        url = route.request.url.split("?")[0]
        requests.append(url)
        found = files.get(url)
        if isinstance(found, bytes):
            route.fulfill(body=found, content_type="text/html")
        elif found is not None and Path(found).is_file():
            kind = mimetypes.guess_type(Path(found).name)[0] or "application/octet-stream"
            route.fulfill(path=str(found), content_type=kind)
        else:
            route.abort()

    return handle

# mulberry32 in place of Math.random, before any script runs (%d: the seed).
_SEEDED_RANDOM = """(() => {
    let state = %d >>> 0;
    Math.random = () => {
        state = (state + 0x6D2B79F5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
})();"""


class TMPage:
    """A Chromium page with TF.js 1.3.1 and TM's ``tmImage`` loaded, and files routed in.

    ``files`` maps URLs to paths (add to it at any time); ``requests`` lists every URL asked for.
    """

    def __init__(self, page, files: dict[str, Path | bytes], requests: list[str]) -> None:
        self.page = page
        self.files = files
        self.requests = requests
        self._mounts = 0

    def mount(self, paths: list[Path], prefix: str) -> list[str]:
        """Route ``paths`` under ``ORIGIN/prefix/`` (a fresh folder per call); returns their URLs."""
        self._mounts += 1
        urls = []
        for i, path in enumerate(paths):
            urls.append(f"{ORIGIN}/{prefix}{self._mounts}/{i:04d}{Path(path).suffix}")
            self.files[urls[-1]] = Path(path)
        return urls

    def mount_folder(self, folder: Path, prefix: str) -> str:
        """Route every file of ``folder`` under one URL folder, names kept; returns that folder's URL."""
        self._mounts += 1
        base = f"{ORIGIN}/{prefix}{self._mounts}"
        for path in Path(folder).iterdir():
            if path.is_file():
                self.files[f"{base}/{path.name}"] = path
        return base

    def train_and_save(self, out_dir: Path, images_by_class: dict[str, list[Path]], training: dict) -> Path:
        """See ``make_tm_tfjs_export``; the base MobileNet must already be routed at MOBILENET_V2_URL."""
        labels = list(images_by_class)
        urls_by_class = [self.mount(images_by_class[label], "train") for label in labels]
        saved = self.page.evaluate("""async ({labels, urlsByClass, training, tmVersion, modelName}) => {
            // As TM's site: metadata it knows up front, then MobileNet V2 at alpha 0.35.
            const model = await tmImage.createTeachable(
                {tfjsVersion: tf.version.tfjs, tmVersion}, {version: 2, alpha: 0.35});
            model.setLabels(labels);
            model.setName(modelName);
            for (let c = 0; c < urlsByClass.length; c++) {
                for (const url of urlsByClass[c]) {
                    const img = new Image(); img.src = url; await img.decode();
                    await model.addExample(c, img);
                }
            }
            await model.train(training);
            let artifacts = null;
            await model.save(tf.io.withSaveHandler(async (a) => {
                artifacts = a;
                return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
            }));
            // TM's downloads: the topology plus one manifest entry naming weights.bin.
            const modelJson = JSON.stringify({modelTopology: artifacts.modelTopology,
                weightsManifest: [{paths: ['weights.bin'], weights: artifacts.weightSpecs}]});
            const bytes = new Uint8Array(artifacts.weightData);
            let binary = '';
            for (let i = 0; i < bytes.length; i += 0x8000) {
                binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
            }
            return {modelJson, weights: btoa(binary), metadata: JSON.stringify(model.getMetadata())};
        }""", {"labels": labels, "urlsByClass": urls_by_class, "training": training,
               "tmVersion": TM_VERSION, "modelName": TM_MODEL_NAME})
        if MOBILENET_V2_URL not in self.requests:
            raise RuntimeError(f"TM never asked for {MOBILENET_V2_URL}: {self.requests[:5]}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.json").write_text(saved["modelJson"])
        (out_dir / "weights.bin").write_bytes(base64.b64decode(saved["weights"]))
        (out_dir / "metadata.json").write_text(saved["metadata"])
        return out_dir

    def predict(self, model_dir: Path, image_paths: list[Path]) -> np.ndarray:
        """See ``tm_predict_in_chromium``."""
        base = self.mount_folder(model_dir, "model")
        urls = self.mount(list(image_paths), "images")
        rows = self.page.evaluate("""async ({modelURL, metadataURL, urls}) => {
            const model = await tmImage.load(modelURL, metadataURL);
            const labels = model.getClassLabels();
            const rows = [];
            for (const url of urls) {
                const img = new Image(); img.src = url; await img.decode();
                const prediction = await model.predict(img);
                // predict() names output i after labels[i]; check rather than trust the order.
                rows.push(labels.map((label, i) => {
                    if (prediction[i].className !== label) throw new Error(`output ${i} is ${prediction[i].className}`);
                    return prediction[i].probability;
                }));
            }
            return rows;
        }""", {"modelURL": f"{base}/model.json", "metadataURL": f"{base}/metadata.json", "urls": urls})
        return np.asarray(rows, dtype=np.float64).reshape(len(urls), -1)


@contextmanager
def tm_page(backend: str = "cpu", base_model_dir: Path | None = None, seed: int = 0) -> Iterator[TMPage]:
    """Headless Chromium on a page that loads TF.js 1.3.1 and then TM's bundle (which expects the
    global ``tf``) from tests/teachable/node_modules, as TM's own snippet loads them from a CDN.
    With ``base_model_dir``, TM's request for its MobileNet is answered from that folder.

    ``Math.random`` is a seeded generator on this page: TM shuffles its examples with it and TF.js
    draws its unseeded initialisers' seeds from it, so training is repeatable with TM's code as is."""
    from playwright.sync_api import sync_playwright

    for script in (TFJS_SCRIPT, TM_SCRIPT):
        if not script.is_file():
            raise FileNotFoundError(f"{script} is missing: run `make test` (npm ci in tests/teachable)")
    files: dict[str, Path | bytes] = {f"{ORIGIN}/index.html": _PAGE, f"{ORIGIN}/tf.min.js": TFJS_SCRIPT,
                                      f"{ORIGIN}/teachablemachine-image.min.js": TM_SCRIPT}
    if base_model_dir is not None:
        google = MOBILENET_V2_URL.rsplit("/", 1)[0]
        files.update({f"{google}/{p.name}": p for p in Path(base_model_dir).iterdir() if p.is_file()})
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.add_init_script(_SEEDED_RANDOM % int(seed))
            page.route("**/*", _route_files(files, requests))
            page.goto(f"{ORIGIN}/index.html")
            page.wait_for_function("window.tf && window.tmImage", timeout=60_000)
            page.evaluate("async (backend) => { await tf.setBackend(backend); await tf.ready(); }", backend)
            if errors:
                raise RuntimeError(f"TM page failed to start: {errors}")
            yield TMPage(page, files, requests)
        finally:
            browser.close()


def make_tm_tfjs_export(out_dir: Path, images_by_class: dict[str, list[Path]], base_model_dir: Path,
                        *, training: dict | None = None, backend: str = "cpu", seed: int = 0) -> Path:
    """Train a TM image model with TM's own library in Chromium and save its TF.js export.

    ``createTeachable({tfjsVersion, tmVersion}, {version: 2, alpha: 0.35})`` (its MobileNet request is
    answered from ``base_model_dir``, see ``build_base_mobilenet``), ``setLabels`` (the dict's order),
    ``setName``, ``addExample`` per image,
    ``train`` with TM's default settings unless ``training`` overrides them, then ``save`` with
    ``tf.io.withSaveHandler``. Writes ``model.json`` (the topology and a weights manifest pointing at
    ``weights.bin``, as in TM's downloads), ``weights.bin`` and ``metadata.json`` (``getMetadata()``)
    into ``out_dir``; returns ``out_dir``.

    Not ``setSeed``: TM's site does not call it, and it writes ``seed: 3.14`` into the Dense
    initialisers' config, which tensorflowjs's converter then cannot turn into Keras (tf_keras wants
    an integer seed). The page's ``Math.random`` is seeded instead (see ``tm_page``).
    """
    with tm_page(backend, base_model_dir, seed) as page:
        return page.train_and_save(out_dir, images_by_class, {**TM_TRAINING, **(training or {})})


def tm_predict_in_chromium(model_dir: Path, image_paths: list[Path], backend: str = "cpu") -> np.ndarray:
    """Load a TM-format folder (``model.json`` + its weights + ``metadata.json``) with TM's
    ``tmImage.load(modelURL, metadataURL)`` in Chromium and return ``predict(image)``'s
    probabilities per image, ``(n, classes)`` float64, columns in the metadata's label order
    (TM's ``predict`` lists classes in model output order, named from the metadata).

    Use 224×224 PNGs for exact parity: TM's centre crop and resize are then the identity.
    One Chromium start per call: pass all images at once.
    """
    with tm_page(backend) as page:
        return page.predict(model_dir, image_paths)


# --------------------------------------------------------------------------- Keras and TFLite exports

def tm_labels_txt(labels: list[str]) -> str:
    """labels.txt as TM writes it: one ``"<index> <label>"`` line per class, each ending in a newline."""
    return "".join(f"{i} {label}\n" for i, label in enumerate(labels))


def _labels_of(tfjs_dir: Path) -> list[str]:
    return json.loads((Path(tfjs_dir) / "metadata.json").read_text())["labels"]


def make_tm_keras_export(tfjs_dir: Path, out_dir: Path, tm_server_form: bool = True) -> Path:
    """TM's Keras export of a TF.js export: ``keras_model.h5`` from tensorflowjs's converter
    (``--input_format tfjs_layers_model --output_format keras``, tf_keras) + ``labels.txt``.

    ``tm_server_form`` (default): the h5's metadata as TM's converter, on tf.keras 2.4, writes it
    (see ``tf_keras_worker.to_tm_server_form``: only keys tf_keras 2.19 added are dropped; checked
    against a real TM file). False keeps tf_keras 2.19's own file, which Keras 3 refuses earlier
    ("Could not locate class 'Functional'"). Returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _run_worker(["to-keras", Path(tfjs_dir) / "model.json", out_dir / "keras_model.h5", int(tm_server_form)])
    (out_dir / "labels.txt").write_text(tm_labels_txt(_labels_of(tfjs_dir)))
    return out_dir


def _tflite_job(keras_h5: Path, out_dir: Path, quantized: bool, representative: Path) -> list:
    name = "model.tflite" if quantized else "model_unquant.tflite"
    return ["tflite", keras_h5, out_dir / name, representative, int(quantized)]


def _save_representative(target: Path, images: list[Path] | None) -> Path:
    """Save the uint8 quantizer's representative data in ``target`` (an ``.npy``): the given images
    (else the calibration images) and one seeded image of uniform noise, so that the input range is
    the full 0-255 of real photos: the input quantization is then scale 1/127, zero point 127,
    i.e. ``q / 127 - 1``."""
    if images is None:
        images = calibration_images(Path(target).parent / "calibration")
    noise = np.random.default_rng(5).integers(0, 256, size=(1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    np.save(target, np.concatenate([load_pixels(images), noise]))
    return Path(target)


def make_tm_tflite_export(keras_h5: Path, out_dir: Path, quantized: bool,
                          representative: list[Path] | None = None) -> Path:
    """TM's TFLite export of its Keras model: ``model_unquant.tflite`` (float) or ``model.tflite``
    (full integer, uint8 input and output, calibrated on ``representative`` images) from tf_keras's
    ``TFLiteConverter``, + ``labels.txt`` (copied from beside the h5). Returns ``out_dir``."""
    keras_h5, out_dir = Path(keras_h5), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:  # keeps the export folders to TM's files
        _run_worker(_tflite_job(keras_h5, out_dir, quantized,
                                _save_representative(Path(scratch) / "representative.npy", representative)))
    (out_dir / "labels.txt").write_text((keras_h5.parent / "labels.txt").read_text())
    return out_dir


def make_tm_python_exports(tfjs_dir: Path, out_root: Path, representative: list[Path] | None = None,
                           probes: list[Path] | None = None) -> dict[str, Path]:
    """The Keras, float TFLite and uint8 TFLite exports of ``tfjs_dir`` in one worker process (what
    ``make_tm_keras_export`` and two ``make_tm_tflite_export`` calls make, a TensorFlow start-up each
    cheaper). With ``probes``, tf_keras's probabilities on them too (``keras_probs``, an ``.npy``).
    Returns ``{"keras": dir, "tflite": dir, "tflite_quantized": dir[, "keras_probs": file]}``."""
    out_root = Path(out_root)
    found = {kind: out_root / kind for kind in ("keras", "tflite", "tflite_quantized")}
    for folder in found.values():
        folder.mkdir(parents=True, exist_ok=True)
    h5 = found["keras"] / "keras_model.h5"
    representative_npy = _save_representative(out_root / "representative.npy", representative)
    jobs = [["to-keras", Path(tfjs_dir) / "model.json", h5]]
    if probes is not None:
        np.save(out_root / "probes.npy", load_pixels(probes))
        found["keras_probs"] = out_root / "keras_probs.npy"
        jobs.append(["predict", h5, out_root / "probes.npy", found["keras_probs"]])
    _run_worker(*jobs, _tflite_job(h5, found["tflite"], False, representative_npy),
                _tflite_job(h5, found["tflite_quantized"], True, representative_npy))
    for kind in ("keras", "tflite", "tflite_quantized"):
        (found[kind] / "labels.txt").write_text(tm_labels_txt(_labels_of(tfjs_dir)))
    return found


def keras3_load_error(h5: Path) -> str | None:
    """What Keras 3's ``keras.models.load_model(h5, compile=False)`` says on a TM h5 (the users'
    bug), or None if it loads."""
    import keras

    try:
        keras.models.load_model(h5, compile=False)
    except Exception as error:  # noqa: BLE001 - the message is the point
        return f"{type(error).__name__}: {error}"
    return None


def zip_tm_export(export_dir: Path, zip_path: Path) -> Path:
    """Zip a TM export folder as TM's site hands it out: its files at the zip's root (Keras:
    keras_model.h5 + labels.txt; TFLite: the .tflite + labels.txt; TF.js: model.json,
    metadata.json, weights.bin). Returns ``zip_path``."""
    wanted = [("keras_model.h5", "labels.txt"), ("model_unquant.tflite", "labels.txt"),
              ("model.tflite", "labels.txt"), ("model.json", "metadata.json", "weights.bin")]
    names = {p.name for p in Path(export_dir).iterdir() if p.is_file()}
    members = next((group for group in wanted if set(group) <= names), None)
    if members is None:
        raise ValueError(f"{export_dir} is not a TM export folder: {sorted(names)}")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in members:
            archive.write(Path(export_dir) / name, name)
    return Path(zip_path)


# --------------------------------------------------------------------------- pytest fixtures

def calibration_images(out_dir: Path) -> list[Path]:
    """The seeded images the base MobileNet's BatchNorms and the uint8 quantizer are calibrated on
    (all three patterns, four each; never used for training or probing)."""
    by_class = make_class_images(out_dir, classes=3, per_class=4, seed=7)
    return [p for paths in by_class.values() for p in paths]


def build_tm_exports(root: Path, base_model_dir: Path, classes: int = 2, per_class: int = 3, seed: int = 0,
                     backend: str = "cpu") -> dict[str, Path]:
    """Everything a test needs, under ``root``, from one Chromium session and one worker process:

    - ``images``: the training images (``images/<label>/NN.png``), ``probes``: held-out 224×224 PNGs
      (two per class; list them with ``probe_images``);
    - ``tfjs``, ``keras``, ``tflite``, ``tflite_quantized``: TM's export folders, and ``<kind>_zip``
      for each, named as TM's site names them;
    - ``tm_probs``: ``.npy`` of TM's own ``tmImage.load`` + ``predict`` on the probes in Chromium
      (the parity reference), ``keras_probs``: tf_keras ``load_model`` on the same (``np.load`` them);
    - ``timings``: ``timings.json``, seconds per step; ``requests``: ``requests.json``, every URL the
      Chromium page asked for (all answered from local files or refused).
    """
    root = Path(root)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    images = make_class_images(root / "images", classes=classes, per_class=per_class, seed=seed)
    probes_by_class = make_class_images(root / "probes", classes=classes, per_class=2, seed=seed + 1000)
    probes = [p for paths in probes_by_class.values() for p in paths]
    found = {"images": root / "images", "probes": root / "probes", "probe_list": root / "probes.json",
             "tm_probs": root / "tm_probs.npy", "timings": root / "timings.json", "requests": root / "requests.json"}
    found["probe_list"].write_text(json.dumps([str(p) for p in probes]))
    step = time.perf_counter()
    with tm_page(backend, base_model_dir, seed) as page:
        timings["chromium_start"] = time.perf_counter() - step
        step = time.perf_counter()
        found["tfjs"] = page.train_and_save(root / "tfjs", images, TM_TRAINING)
        timings["tm_train_and_save"] = time.perf_counter() - step
        step = time.perf_counter()
        np.save(found["tm_probs"], page.predict(found["tfjs"], probes))
        timings["tm_load_and_predict"] = time.perf_counter() - step
        found["requests"].write_text(json.dumps(page.requests))
    step = time.perf_counter()
    training = [p for paths in images.values() for p in paths]
    found.update(make_tm_python_exports(found["tfjs"], root, representative=training, probes=probes))
    timings["keras_tflite_worker"] = time.perf_counter() - step
    for kind, name in (("keras", KERAS_ZIP), ("tflite", TFLITE_ZIP), ("tflite_quantized", TFLITE_QUANTIZED_ZIP),
                       ("tfjs", TFJS_ZIP)):
        (root / "zips" / kind).mkdir(parents=True, exist_ok=True)
        found[f"{kind}_zip"] = zip_tm_export(found[kind], root / "zips" / kind / name)
    timings["total"] = time.perf_counter() - started
    found["timings"].write_text(json.dumps(timings, indent=1))
    return found


def probe_images(exports: dict[str, Path]) -> list[Path]:
    """The held-out 224×224 probe PNGs of a ``build_tm_exports`` result, in class order."""
    return [Path(p) for p in json.loads(exports["probe_list"].read_text())]


def probe_labels(exports: dict[str, Path]) -> list[int]:
    """Each probe's true class index (the folder it was written to, in label order)."""
    labels = _labels_of(exports["tfjs"])
    return [labels.index(p.parent.name) for p in probe_images(exports)]


@pytest.fixture(scope="session")
def tm_base_mobilenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded stand-in for TM's Google-storage MobileNetV2 0.35 (a TF.js layers model folder)."""
    root = tmp_path_factory.mktemp("tm-base")
    build_base_mobilenet(root / "mobilenet", calibration_images(root / "calibration"))
    return root / "mobilenet"


@pytest.fixture(scope="session")
def tm_exports(tmp_path_factory: pytest.TempPathFactory, tm_base_mobilenet: Path) -> dict[str, Path]:
    """TM's three exports of a 2-class model (3 images a class), built once per session:
    see ``build_tm_exports`` for the keys."""
    return build_tm_exports(tmp_path_factory.mktemp("teachable"), tm_base_mobilenet)


@pytest.fixture(scope="session")
def tm_exports_3class(tmp_path_factory: pytest.TempPathFactory, tm_base_mobilenet: Path) -> dict[str, Path]:
    """The same for 3 classes, 4 images a class: for label order and labels.txt with more than two
    lines. Not for accuracy: on random MobileNet features TM itself gets one of the six probes nearly
    tied (blue checks 0.44 against green dots 0.50), so a uint8 top-1 check there could flip."""
    return build_tm_exports(tmp_path_factory.mktemp("teachable3"), tm_base_mobilenet, classes=3, per_class=4, seed=3)
