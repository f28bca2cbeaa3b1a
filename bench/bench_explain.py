"""Grad-CAM speed and faithfulness, printed as one report.

    python bench/bench_explain.py [--repeats 30]

1. Pointing game on the shapes model's validation images (regenerated from seed 0; the
   synthetic shapes have known boxes): how often the heatmap's peak is inside the object's
   box, against a random point.
2. On mobilenet_v2 at 224x224 (random weights), the four taking turns in blocks
   (``timing.alternating_ms``): Classifier.predict, our Grad-CAM (fast path and tf.function
   path), and the eager keras-io recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from timing import BLOCKS, alternating_ms, machine, print_rows  # noqa: E402

from vision.defaults import SHAPES_MODEL  # noqa: E402


def pointing_report(bundle_path: Path, per_class: int = 250) -> None:
    from PIL import Image

    from vision.bundle.store import load_bundle
    from vision.data.synthetic import BOXES_FILE, write_shapes
    from vision.explain.cam import Explainer
    from vision.explain.pointing import pointing_game

    bundle = load_bundle(bundle_path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_shapes(Path(tmp) / "shapes", per_class=per_class, size=bundle.preprocessing.size[0], seed=0)
        boxes = json.loads((folder / BOXES_FILE).read_text())
        samples = [(np.asarray(Image.open(folder / rel)), bundle.labels.index(rel.split("/")[1]), np.array(box))
                   for rel, box in sorted(boxes.items()) if rel.startswith("val/")]
    print(f"pointing game, shapes model ({bundle_path}), {len(samples)} validation images")
    for method in ("gradcam", "gradcam++", "scorecam"):
        result = pointing_game(Explainer.from_bundle(bundle), samples, method=method)
        print(f"  {method:<10} peak in box {result.rate:6.1%} of {result.evaluated} correctly classified "
              f"({result.skipped_wrong} misclassified left out); random point {result.random_rate:6.1%} "
              f"(expected {result.expected_random:.1%})")


def keras_io_recipe(model, x, class_index):
    """The keras-io Grad-CAM, eager, rebuilt for a nested base as FACTS.md describes."""
    import keras
    import tensorflow as tf

    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    inner = keras.Model(base.inputs, [base.get_layer("out_relu").output, base.output])
    with tf.GradientTape() as tape:
        h = x
        features = None
        for layer in model.layers[1:]:
            if layer is base:
                features, h = inner(h)
            elif layer.name == "probabilities":
                continue
            else:
                h = layer(h)
        score = h[:, class_index]
    grads = tape.gradient(score, features)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(features[0] @ pooled[..., tf.newaxis])
    return tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)


def speed_report(repeats: int) -> None:
    from vision.bundle.store import load_bundle, make_info, save_bundle
    from vision.data.images import Preprocessing
    from vision.models.registry import create_model

    with tempfile.TemporaryDirectory() as tmp:  # open while the bundle's files are read (lazily)
        model = create_model("mobilenet_v2", 4, 224, weights=None)
        info = make_info("mobilenet_v2", ["a", "b", "c", "d"], "mobilenet_v2", Preprocessing((224, 224)))
        _speed(load_bundle(save_bundle(model, info, Path(tmp) / "m")), repeats)


def _speed(bundle, repeats: int) -> None:
    from vision.explain.cam import Explainer
    from vision.runtime.inference import Classifier

    classifier = Classifier(bundle)
    fast = Explainer.from_bundle(bundle)
    compiled = Explainer.from_bundle(bundle, fast=False)
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = classifier.prepare(image)
    np.testing.assert_allclose(fast.explain(image).cam, compiled.explain(image).cam, atol=1e-4)

    times = alternating_ms({"predict": lambda: classifier.predict(image), "ours": lambda: fast.explain(image),
                            "ours_tf": lambda: compiled.explain(image),
                            "eager": lambda: keras_io_recipe(bundle.model, x, 0)},
                           repeats={"predict": repeats, "ours": repeats, "ours_tf": repeats,
                                    "eager": max(BLOCKS, repeats // 3)})
    predict, ours, ours_tf, eager = (times[k] for k in ("predict", "ours", "ours_tf", "eager"))
    height, width = bundle.preprocessing.size
    print(f"\nmobilenet_v2 {height}x{width}, batch 1, medians; the four took turns in {BLOCKS} blocks "
          f"(Grad-CAM target layer: {fast.layer}, fast path: {fast.runtime}); {machine()}")
    print_rows([("Classifier.predict", f"{predict:8.2f} ms"),
                ("Grad-CAM, fast path", f"{ours:8.2f} ms   {ours / predict:6.2f}x predict (target <= 2)"),
                ("Grad-CAM, tf.function path", f"{ours_tf:8.2f} ms   {ours_tf / predict:6.2f}x predict"),
                ("Grad-CAM, eager keras-io", f"{eager:8.2f} ms"),
                ("eager / ours (fast)", f"{eager / ours:8.1f}x   (target >= 10)"),
                ("eager / ours (tf.function)", f"{eager / ours_tf:8.1f}x")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per side")
    parser.add_argument("--model", type=Path, default=SHAPES_MODEL, help="the shapes model (a bundle folder)")
    args = parser.parse_args()
    pointing_report(args.model)
    speed_report(args.repeats)


if __name__ == "__main__":
    main()
