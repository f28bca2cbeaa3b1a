"""One Train-view training through a running app, as a visitor does it: class cards filled through
``/add_samples``, then ``/train`` with the view's defaults. Shared by the tests and
``bench/bench_load.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The Train view's defaults: efficientnet_lite0 at 224 px, 20 epochs, augmentation, ImageNet weights.
DEFAULTS = ("efficientnet_lite0", 224, 20, True, True)


def texture_cards(folder: Path, per_class: int = 6) -> dict[str, list[Path]]:
    """Cards of scikit-image's brick, grass and gravel patches written under ``folder``, with one
    brick patch filed under grass by mistake (the planted mislabel a data check should find)."""
    from vision.data.photos import TEXTURES, write_texture_task

    task = write_texture_task(folder, train_per_class=per_class, test_per_class=1, patch=96)
    cards = {texture: sorted((task / "train" / texture).iterdir()) for texture in TEXTURES}
    cards["grass"].append(next(iter(sorted((task / "test" / "brick").iterdir()))))
    return cards


def train_through_app(url: str, photos: Mapping[str, Sequence[str | Path]], name: str | None = None,
                      settings: Sequence[Any] = DEFAULTS, timeout: float = 600) -> tuple[float, tuple[Any, ...]]:
    """Fill one class card per key of ``photos`` (a new session) and train with ``settings``
    (architecture, size, epochs, augment, ImageNet weights); returns (seconds from the first
    upload to the answer, ``/train``'s nine outputs).

    Raises:
        gradio_client.exceptions.AppError: the app answered with an error.
        TimeoutError: no answer within ``timeout`` seconds (a hang).
    """
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    started = time.perf_counter()
    for label, files in photos.items():
        client.predict(label, None, [handle_file(str(path)) for path in files], api_name="/add_samples")
    job = client.submit(None, *settings, name or f"trained-{time.time_ns()}", api_name="/train")
    result = job.result(timeout=timeout)
    return time.perf_counter() - started, tuple(result)
