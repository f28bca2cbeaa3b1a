"""Full-integer TFLite: int8 weights *and* activations, for CPUs' int8 kernels, NPUs and edge
accelerators (Coral's Edge TPU, microcontrollers) that run no float.

Quantizations (``vision.export.options.QUANTIZATIONS["tflite"]``)::

    int8           int8 inside; float32 input and output: a drop-in for the float flatbuffer
                   (the converter adds the quantize / dequantize ops at the ends)
    int8-io        int8 input and output tensors (TFLite Micro, most NPUs)
    int8-uint8-io  uint8 input and output tensors (the Edge TPU, Teachable Machine's model.tflite)

Activation ranges are calibrated on a representative dataset (``calibration_images``): the
images the caller hands over (the Optimize view's training images, the session's own
samples), else photos that ship with the installed packages (the everyday-objects model's
case: its training set is ImageNet). What ``vision.json`` records about the training data is
never read: a bundle pulled from the Hub or imported says what it likes there ("synth:5000000"
would render 20 M images, "/" would walk the disk), and it is data, not a recipe. Those are
never the images the export is checked on (``formats.probe_images``) nor those the benchmarks
score: the check stays held out.

Preprocessing is not compiled in: the flatbuffer takes the model's fixed-size input, as the
float one does. Resizing and a float scale are what an int8 accelerator cannot do, and the
calibration spans every pixel value from 0 to 255, so for the ``-io`` variants the quantized
input *is* the resized pixel (``q = pixel`` for uint8, ``q = pixel - 128`` for int8 on the
models here); ``metadata.json`` states the scale, zero point and that pixel mapping.

What else was tried on the everyday model, measured on ``bench/deploy_int8.py``'s 165 views
of 5 photos (PTQ as here: 3 differ from Keras, 98.2 %) and on 198 views of 6 other package
photos (gradio's: 5 differ, 3 of them exact ties on the int8 softmax's 1/256 grid); none is
used, because none lowered the error itself by more than 4 % (mean total-variation distance
of the probabilities from Keras: 0.106 here, 0.102 at best), and the count of differing views moves as much with
the calibration crops alone (seeds 1-3 of the same method: 6, 6 and 5 differ):

- more calibration images (288 crops, or mirrored copies): 8 and 6 differ. TFLite's ranges
  are the calibration's min and max, so more images only widen them. Bias correction
  measured on the 288, ranges on the 96: 2 differ (98.8 %), the fewest seen, still one over
  what 99 % allows, and with crop seeds 1 and 2 6 and 7 differ;
- ranges chosen by quantization MSE from histograms (written into a calibrate-only
  flatbuffer before ``mlir_quantize``): 7 differ, distance 0.138. The wide tensors are the
  linear bottlenecks (``blockN_project_bn``, about -45..50 against 0..6 after ReLU6), and
  their tails are real signal: clipping them costs more than the coarser grid;
- cross-layer equalization of conv -> ReLU6 -> depthwise: scaling a channel up is only exact
  below the clip, and the 3 calibration photos leave channels near-dead that other photos
  drive hard (the float model itself moved by up to 0.22-0.25 in probability): 26-31 differ;
- equalizing the residual streams' channels (exact: no clip there, consumers divided): the
  ranges shrink only 15-45 % (wide channels are many, not a few outliers): 4-8 differ;
- sequential empirical bias correction (every layer's simulated int8 mean matched to float,
  in order): distance 0.135, 9 differ; it fits the 3 calibration photos' means;
- calibrating on those 3 photos plus gradio's 6: 5 differ (and no fewer on gradio's photos
  themselves); QAT on them raised its simulated distillation loss every epoch (0.0045 before,
  then 0.022, 0.012, 0.0055), so it kept PTQ's weights: 5 differ.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from vision.bundle.store import Bundle
from vision.data.datasets import Split
from vision.data.images import load_image, preprocess
from vision.data.photos import photographed_at, with_crops
from vision.errors import ExportError
from vision.export.options import INT8_METHODS
from vision.models.heads import OUTPUT_LAYER
from vision.models.serving import serving_model
from vision.runtime.int8 import convert, run
from vision.runtime.tflite import TFLiteRunner
from vision.training.qat import fine_tune
from vision.training.weight_rounding import bias_corrected

log = logging.getLogger(__name__)

#: Quantization name -> the dtype of the flatbuffer's input and output tensors.
FULL_INTEGER = {"int8": "float32", "int8-io": "int8", "int8-uint8-io": "uint8"}
#: How many calibration images: TFLite's guidance is ~100-500; ranges settle well before 100
#: on the models here, and the everyday model calibrates in ~3 s per 100.
CALIBRATION_IMAGES = 96
#: "ptq": calibration and bias correction (``vision.training.weight_rounding``); "qat": then quantization-aware
#: fine-tuning on the calibration images (``vision.training.qat``). PTQ is the default: it agreed
#: with Keras as well as QAT or better on every model of ``bench/deploy_int8.py`` in a fifth
#: of the time. QAT earns its place where int8 itself costs accuracy: ``bench/bench_qat.py``'s
#: digits CNN with one channel 300x wider than the rest loses 7.4 points to PTQ (95.1 % ->
#: 87.8 %); QAT at these settings wins back 2.2 of them, at 8 epochs of 1e-3 4.5 (92.3 %).
DEFAULT_METHOD = "ptq"
METHODS = INT8_METHODS
#: Real colour photos inside installed packages that neither the export check
#: (``PROBE_PHOTOS``) nor the benchmarks (``example_photos``) use: the calibration set of a
#: bundle whose training images are not on this machine. Grey micrographs and the moon were
#: tried too; colour photos are what the models here see.
CALIBRATION_PHOTOS = ("skimage:motorcycle_right.png", "sklearn:china.jpg", "sklearn:flower.jpg")

def io_dtype(quantize: str) -> str:
    """The input/output dtype of a full-integer quantization name (``FULL_INTEGER``)."""
    return FULL_INTEGER[quantize]


def calibration_images(bundle: Bundle, count: int = CALIBRATION_IMAGES, seed: int = 0,
                       images: Split | None = None) -> tuple[list[np.ndarray], str]:
    """Representative uint8 RGB images at the model's size, and where they came from.

    Args:
        images: The caller's own labelled images (e.g. the model's training split as the
            caller loaded it); ``count`` of them are taken, spread evenly over the classes.
            Without them, package photos (``CALIBRATION_PHOTOS``) and random crops of them.
            Nothing the bundle records is loaded (see the module's docstring).

    The first image gets one black and one white pixel, so the input's range is exactly
    0..255 and the quantized input is the pixel itself (one pixel moves no activation range
    measurably).
    """
    size = bundle.preprocessing.size
    # Named without the folder: metadata.json and the app's message go to visitors.
    if images is not None and len(images):
        chosen = _round_robin(images, count)
        described = f"{len(chosen)} training images"
    else:
        photos = package_photos(CALIBRATION_PHOTOS)
        crops = max(0, -(-count // max(len(photos), 1)) - 1)
        chosen = with_crops(photos, crops, seed)[:count]
        described = f"{len(chosen)} package photos and crops of them (no training images were given)"
    chosen = [photographed_at(image, size) if image.shape[:2] != tuple(size) else image for image in chosen]
    first = chosen[0].copy()
    first[0, 0], first[-1, -1] = 0, 255
    return [first, *chosen[1:]], described


def _round_robin(split: Split, count: int) -> list[np.ndarray]:
    """Up to ``count`` images of ``split``, the classes taking turns, so a small count still
    sees every class."""
    seen: dict[int, int] = {}
    turn = [seen.__setitem__(label, seen.get(label, -1) + 1) or seen[label] for label in split.labels.tolist()]
    order = np.argsort(turn, kind="stable")
    sources = split.sources()
    return [load_image(sources[i]) for i in order[:count]]


def package_photos(names: tuple[str, ...]) -> list[Path]:
    """``"skimage:<file>"`` / ``"sklearn:<file>"`` names as paths to the photos those
    packages ship; the ones missing here are left out."""
    roots = {}
    try:
        import skimage  # lazy: optional, and only the calibration without training images needs it

        roots["skimage"] = Path(skimage.__file__).parent / "data"
    except ImportError:
        pass
    try:
        import sklearn  # lazy: optional, and only the calibration without training images needs it

        roots["sklearn"] = Path(sklearn.__file__).parent / "datasets" / "images"
    except ImportError:
        pass
    paths = [roots[package] / file for package, file in (name.split(":", 1) for name in names) if package in roots]
    return [path for path in paths if path.is_file()]


def io_metadata(interpreter: Any, preprocessing: Any, classes: int) -> dict[str, Any]:
    """What a runtime needs to feed and read the flatbuffer: the input's and each output's
    dtype, scale and zero point (outputs in the interpreter's order, named as in
    ``metadata.json``), and how a resized pixel becomes the quantized input."""

    def described(detail: dict[str, Any]) -> dict[str, Any]:
        width = int(detail["shape"][-1])
        entry: dict[str, Any] = {"dtype": np.dtype(detail["dtype"]).name,
                                 "output": OUTPUT_LAYER if width == classes else "familiarity" if width == 1
                                 else "features"}
        if entry["dtype"] != "float32":
            scale, zero_point = detail["quantization"]
            entry.update(scale=float(scale), zero_point=int(zero_point), real_value="(q - zero_point) * scale")
        return entry

    source = described(interpreter.get_input_details()[0])
    source.pop("output")
    if source["dtype"] != "float32":
        # pixel * p_scale + p_offset = (q - zero_point) * scale  =>  q = pixel * ratio + shift
        ratio = preprocessing.scale / source["scale"]
        shift = preprocessing.offset / source["scale"] + source["zero_point"]
        exact = abs(ratio - 1) < 1e-4 and abs(shift - round(shift)) < 1e-3
        offset = round(shift)
        if not exact:
            source["from_pixels"] = f"q = round(pixel * {ratio:.6g} + {shift:.6g})"
        else:
            source["from_pixels"] = f"q = pixel {'+' if offset > 0 else '-'} {abs(offset)}" if offset else "q = pixel"
        source["pixels_exact"] = exact
    return {"input": source, "outputs": [described(d) for d in interpreter.get_output_details()]}


def int8_ready(model: Any, calibration: np.ndarray, method: str = DEFAULT_METHOD) -> tuple[Any, dict[str, Any]]:
    """A float copy of the classifier ``model`` prepared for a full-integer conversion: bias
    corrected for the int8 weight grid (``"ptq"``), then fine-tuned quantization-aware
    (``"qat"``, ``vision.training.qat``), and for QAT what it did (steps, the distillation
    loss before and after each epoch). ``model`` itself is left as it is."""
    if method not in METHODS:
        raise ExportError(f"unknown int8 method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "qat":
        tuned = fine_tune(model, calibration)
        return tuned.model, {"steps": tuned.steps, "losses": [float(f"{v:.3g}") for v in tuned.losses]}
    return bias_corrected(model, calibration), {}


def export_full_integer(bundle: Bundle, folder: Path, inputs: np.ndarray, quantize: str, features: bool = False,
                        method: str = DEFAULT_METHOD,
                        calibration: Split | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Write ``folder/model.tflite``, the full-integer serving model of ``bundle``, and run
    ``inputs`` (preprocessed check images) through it.

    Args:
        quantize: A ``FULL_INTEGER`` name.
        features: Add the pooled features as an output (``serving_model``).
        method: ``"ptq"`` or ``"qat"`` (``int8_ready``).
        calibration: The caller's own images to calibrate on (``calibration_images``).

    Returns:
        The outputs (dequantized, in the interpreter's order) and what ``metadata.json`` adds
        under ``full_integer``: the I/O tensors' dtypes, scales and zero points, the
        calibration set and the method.
    """
    started = time.perf_counter()
    images, source = calibration_images(bundle, images=calibration)
    calibration = np.asarray(preprocess(np.stack(images), bundle.preprocessing))
    classifier, tuning = int8_ready(bundle.model, calibration, method)
    model = serving_model(classifier, bundle.detector, features=features)
    flatbuffer = convert(model, calibration, io_dtype(quantize))
    (folder / "model.tflite").write_bytes(flatbuffer)
    runner = TFLiteRunner(flatbuffer)
    info = {"method": method, **({"qat": tuning} if tuning else {}), "calibration": source,
            "preprocessing_compiled_in": False,
            **io_metadata(runner.interpreter, bundle.preprocessing, len(bundle.labels)),
            "seconds": round(time.perf_counter() - started, 1)}
    return run(runner, inputs), info
