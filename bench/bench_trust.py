"""Trust: "unknown", calibration, label errors, and what they cost at prediction time.

    python bench/bench_trust.py [--only shapes textures few-shot labels cost]

Every figure the "trust what it says" targets name, printed with its target, on the
models trained here from package data:
- shapes: ``resnet_small`` at 64 px on the synthetic shapes (seed 0), from scratch, the
  shipped model's recipe; "new test images" are shapes drawn with another seed;
- textures: the fast path on scikit-image's brick, grass and gravel (train patches from
  the top half of each photo, test patches from the bottom half);
- few-shot textures: the same task with 10 photos per class (6 of them validation images, too
  few to fit a temperature on): calibrated on k-fold out-of-fold logits, scored on 120
  held-out test patches; then the same from 24 px patches, where the model makes mistakes.
Outliers are the package photos of everyday things (grace_hopper, chelsea, coffee, rocket,
astronaut) and 16 crops of each: never used to fit anything (the detector's threshold looks
at other package photos).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

import numpy as np  # noqa: E402
from timing import alternating_ms, machine  # noqa: E402


def _mahalanobis_auroc(bundle, dataset, inliers, outliers) -> float:
    """The alternative detector, class-conditional Mahalanobis with a Ledoit-Wolf shared
    covariance, on the same features: measured to choose between the two."""
    from sklearn.covariance import LedoitWolf

    from vision.trust.fit import features_and_logits
    from vision.trust.ood import auroc

    features, _, labels = features_and_logits(bundle.model, dataset.train, bundle.preprocessing)
    means = np.stack([features[labels == c].mean(0) for c in range(len(dataset.class_names))])
    precision = LedoitWolf().fit(features - means[labels]).precision_

    def score(x):
        return -np.min([np.einsum("ij,jk,ik->i", x - m, precision, x - m) for m in means], axis=0)

    return auroc(score(inliers), score(outliers))


def trust_report(name: str, folder: Path, dataset, test_split, outlier_images) -> None:
    from vision.bundle.store import load_bundle
    from vision.models.serving import feature_model
    from vision.runtime.inference import Classifier
    from vision.trust.calibration import expected_calibration_error, softmax
    from vision.trust.fit import features_and_logits
    from vision.trust.ood import auroc

    bundle = load_bundle(folder)
    classifier = Classifier(bundle)
    own_val = classifier.classify_batch(dataset.val.sources())
    tests = classifier.classify_batch(test_split.sources())
    outliers = classifier.classify_batch(outlier_images)
    accepted_val = np.mean([not r.unknown for r in own_val])
    accepted_test = np.mean([not r.unknown for r in tests])
    flagged = np.mean([r.unknown for r in outliers])
    inlier_scores = np.array([r.familiarity for r in tests])
    outlier_scores = np.array([r.familiarity for r in outliers])
    print(f"\n{name}: {len(dataset.train)} training images, threshold {bundle.detector.threshold:.3f}")
    print(f"  unknown   real photos flagged {flagged:6.1%} of {len(outliers)}   own validation accepted "
          f"{accepted_val:6.1%} of {len(own_val)}   new test images accepted {accepted_test:6.1%} of {len(tests)}")
    test_features, test_logits, test_labels = features_and_logits(bundle.model, test_split, bundle.preprocessing)
    outlier_inputs = np.stack([classifier.prepare(image)[0] for image in outlier_images])
    outlier_features = feature_model(bundle.model).predict(outlier_inputs, verbose=0)[0]
    print(f"            AUROC k-NN cosine {auroc(inlier_scores, outlier_scores):.4f}   (class-conditional "
          f"Mahalanobis, Ledoit-Wolf: {_mahalanobis_auroc(bundle, dataset, test_features, outlier_features):.4f})")
    print("            targets: >= 95 % flagged, >= 95 % of own validation images accepted")
    calibration = bundle.info.get("calibration")
    if calibration:
        # The saved logits are already divided by T: undo it for "before".
        before = expected_calibration_error(softmax(test_logits, 1 / calibration["temperature"]), test_labels)
        after = expected_calibration_error(softmax(test_logits), test_labels)
        print(f"  calibration  T = {calibration['temperature']:.3f} ({calibration.get('method', 'validation')}, "
              f"n = {calibration['images']})   ECE on {len(test_labels)} held-out test images: "
              f"before {before:.4f}, after {after:.4f}   (validation: {calibration['ece_before']:.4f} -> "
              f"{calibration['ece_after']:.4f})   target: after <= 0.05 and lower than before")
    else:
        print("  calibration  not fitted (too few validation images)")


def few_shot_calibration(root: Path, patch: int = 128, seed: int = 0) -> None:
    """10 photos per class through the app's default recipe; the temperature (fitted on k-fold
    out-of-fold logits) judged on the 120 held-out test patches, beside what the label audit's
    logistic-regression folds would have given (a head trained differently: other logit scale)."""
    from vision.bundle.store import load_bundle
    from vision.data.datasets import load_folder
    from vision.data.photos import write_texture_task
    from vision.models.features import get_extractor
    from vision.models.heads import LOGITS_LAYER
    from vision.training.config import TrainConfig
    from vision.training.recipe import train_bundle
    from vision.trust.audit import out_of_fold_probabilities
    from vision.trust.calibration import expected_calibration_error, fit_temperature, softmax

    task = write_texture_task(root / f"few-shot-{patch}", train_per_class=10, test_per_class=40, patch=patch,
                              seed=seed)
    dataset = load_folder(task / "train")
    test = load_folder(task / "test").everything()
    started = time.perf_counter()
    trained = train_bundle(dataset, TrainConfig(model="efficientnet_lite0"), root / f"few-shot-{patch}-model")
    seconds = time.perf_counter() - started
    calibration = load_bundle(trained.path).info.get("calibration")
    # The backbone is frozen: test logits are the cached features through the saved (scaled) head.
    kernel, bias = trained.result.model.get_layer(LOGITS_LAYER).get_weights()
    logits = get_extractor(224).features(test.sources())[0] @ kernel + bias
    labels = test.labels
    print(f"\nfew-shot textures from {patch} px patches: {len(dataset.train)} training + {len(dataset.val)} validation "
          f"photos of {len(dataset.class_names)} classes, trained, calibrated and saved in {seconds:.1f} s; "
          f"test accuracy {np.mean(logits.argmax(1) == labels):.3f} on {len(labels)} held-out patches")
    if not calibration:
        print("  calibration  not fitted   target: a temperature fitted and recorded   FAIL")
        return
    t = calibration["temperature"]

    def nll(p):
        return float(-np.mean(np.log(p[np.arange(len(labels)), labels] + 1e-12)))

    raw = logits * t  # the saved logits are already divided by T
    before, after = softmax(raw), softmax(logits)
    ece_after = expected_calibration_error(after, labels)
    passed = calibration.get("method") == "k-fold out-of-fold" and ece_after <= 0.05
    print(f"  calibration  T = {t:.3f} recorded in vision.json ({calibration.get('method', 'validation')}, "
          f"n = {calibration['images']} out-of-fold answers; their ECE {calibration['ece_before']:.4f} -> "
          f"{calibration['ece_after']:.4f})")
    print(f"               held-out {len(labels)} patches: ECE {expected_calibration_error(before, labels):.4f} -> "
          f"{ece_after:.4f}, NLL {nll(before):.4f} -> {nll(after):.4f}   (best T for them: "
          f"{fit_temperature(raw, labels):.3f})")
    verdict = "PASS" if passed else "FAIL"
    print(f"               target: a temperature fitted and recorded, ECE after <= 0.05   {verdict}")
    # What the audit's logistic-regression folds would give: their own logit scale, not the head's.
    everything = dataset.everything()
    audit_logits = np.log(out_of_fold_probabilities(get_extractor(224).features(everything.sources())[0],
                                                    everything.labels) + 1e-12)
    t_audit = fit_temperature(audit_logits, everything.labels)
    print(f"               (T from the label audit's logistic-regression folds instead: {t_audit:.3f}, held-out ECE "
          f"{expected_calibration_error(softmax(raw, t_audit), labels):.4f}, NLL {nll(softmax(raw, t_audit)):.4f})")


def label_errors(name: str, dataset, seed: int = 0) -> None:
    """Flip 10 % of the labels, then audit twice: the first run embeds every image with the
    Lite0 backbone, the second finds them all in the feature cache (the case after fast
    training, where the same images were just embedded)."""
    from vision.trust.audit import audit_dataset

    rng = np.random.default_rng(seed)
    # audit_dataset numbers the training images first, then the validation ones.
    labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    flipped = rng.choice(len(labels), len(labels) // 10, replace=False)
    classes = len(dataset.class_names)
    for i in flipped:
        labels[i] = (labels[i] + rng.integers(1, classes)) % classes
    dataset.train.labels[:], dataset.val.labels[:] = labels[:len(dataset.train)], labels[len(dataset.train):]
    started = time.perf_counter()
    audit = audit_dataset(dataset)
    computing = time.perf_counter() - started
    started = time.perf_counter()
    again = audit_dataset(dataset)
    cached = time.perf_counter() - started
    assert [i.index for i in again.ranked] == [i.index for i in audit.ranked]
    top = {issue.index for issue in audit.ranked[:len(flipped)]}
    found = len(top & set(flipped.tolist()))
    per_class = np.bincount(labels, minlength=classes)
    print(f"  labels    {name} ({len(labels)} images, {per_class.min()}-{per_class.max()} per class after the "
          f"flips): {len(flipped)} labels flipped at random; {found} ({found / len(flipped):.0%}) among the top "
          f"{len(flipped)} ranked, {len(audit.label_issues)} flagged by cleanlab   target >= 80 %")
    print(f"            audit time {computing:.1f} s computing the features, {cached:.1f} s with every feature cached")


def prediction_cost(name: str, folder: Path, image, repeats: int = 500) -> None:
    """Classifier.classify with the bundle's detector against the same bundle without it
    (its flatbuffer converted without the detector), the two taking turns in blocks."""
    from vision.bundle.store import open_bundle
    from vision.runtime.inference import Classifier

    with_detector = Classifier(open_bundle(folder))
    without = open_bundle(folder)
    without.info = {k: v for k, v in without.info.items() if k != "ood"}
    plain = Classifier(without)
    assert plain.detector is None and with_detector.detector is not None
    detector = with_detector.detector
    if detector.references is not None:
        kind = f"{detector.method} over {len(detector.references)} reference features"
    else:
        kind = detector.method
    height, width = with_detector.preprocessing.size
    times = alternating_ms({"plain": lambda: plain.classify(image), "detector": lambda: with_detector.classify(image)},
                           repeats=repeats, warmup=10)
    a, b = times["plain"], times["detector"]
    print(f"  cost      {name} ({with_detector.bundle.info['architecture']}, {height}x{width}, {kind}): prediction "
          f"{a:.2f} ms, with the detector {b:.2f} ms ({b / a - 1:+.1%}; target <= +10 %)")


SECTIONS = ("shapes", "textures", "few-shot", "labels", "cost")


def main() -> None:
    from PIL import Image

    from vision.data.datasets import Split, load_folder, load_synthetic
    from vision.data.photos import example_photos, with_crops, write_texture_task
    from vision.data.synthetic import make_shapes
    from vision.training.config import TrainConfig
    from vision.training.recipe import train_bundle
    from vision.zoo.everyday import default_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    only = set(parser.parse_args().only)
    if "cost" in only:  # the prediction cost is measured on the shapes and textures models
        only |= {"shapes", "textures"}
    outliers = with_crops(example_photos(), crops=16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = 64
        task = write_texture_task(root / "textures", train_per_class=30, test_per_class=40, patch=128)
        if "shapes" in only:
            # The shipped shapes model's recipe (docs/models.md, `make shapes-model`), with trust fitted.
            shapes = load_synthetic(per_class=250, size=size, seed=0)
            fresh = make_shapes(per_class=50, size=size, seed=7)
            train_bundle(shapes, TrainConfig(model="resnet_small", epochs=30, patience=10, seed=0), root / "shapes")
            trust_report(f"shapes (resnet_small, {size} px, from scratch)", root / "shapes", shapes,
                         Split(np.asarray(fresh.labels), images=np.asarray(fresh.images)), outliers)

        if "textures" in only:
            textures = load_folder(task / "train", val_fraction=0.3)
            test = load_folder(task / "test").everything()
            train_bundle(textures, TrainConfig(model="efficientnet_lite0", epochs=20), root / "textures-model")
            photos = len(textures.train) + len(textures.val)
            trust_report(f"textures (fast path, {photos} photos of {len(textures.class_names)} classes)",
                         root / "textures-model", textures, test, outliers)

            # A harder task (24 px patches, blown up to 224): the model makes mistakes, so
            # calibration has something to correct.
            patch = 24
            small = write_texture_task(root / "small-textures", train_per_class=40, test_per_class=60, patch=patch,
                                       seed=1)
            small_set = load_folder(small / "train", val_fraction=0.3)
            train_bundle(small_set, TrainConfig(model="efficientnet_lite0", epochs=20), root / "small-model")
            trust_report(f"textures from {patch} px patches (harder)", root / "small-model", small_set,
                         load_folder(small / "test").everything(), outliers)

        if "few-shot" in only:
            few_shot_calibration(root)
            few_shot_calibration(root, patch=24, seed=1)

        if "labels" in only:
            print()
            label_errors("textures (the test patches)", load_folder(task / "test"))
            label_errors("shapes (seed 3)", load_synthetic(per_class=100, size=size, seed=3))

        if "cost" in only:
            print()
            photo_path = example_photos()[1]
            photo = np.asarray(Image.open(photo_path).convert("RGB"))
            print(f"  (prediction cost on {photo_path.name}, {photo.shape[1]}x{photo.shape[0]}; the sides take turns "
                  f"in blocks; {machine()})")
            prediction_cost("textures, fast path", root / "textures-model", photo)
            prediction_cost("everyday objects, the app's default", default_model(), photo)
            prediction_cost("shapes, from scratch", root / "shapes", photo)


if __name__ == "__main__":
    main()
