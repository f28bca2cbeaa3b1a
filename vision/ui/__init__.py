"""The Gradio app, built from an ``AppConfig``: ``build(config).launch(...)``.

``layout`` wires the views (one module each: classify, live, train, models, hub, export);
``session`` holds what each visitor has; ``access`` decides who may do what.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from vision.images import MAX_PIXELS
from vision.ui.config import AppConfig
from vision.ui.context import Context


class VisionApp:
    """A built app: its Blocks, its sessions, and a ``close`` that removes every file it made."""

    def __init__(self, config: AppConfig) -> None:
        from vision.cache import get_classifier, get_explainer
        from vision.ui.layout import build_blocks

        self.config = config
        self.ctx = Context.create(config)
        # Load and compile the default model now: a broken bundle fails at start with a clear
        # message, and the first visitor does not wait for the TFLite conversion.
        get_classifier(config.default_model)
        get_explainer(config.default_model)
        self.demo = build_blocks(self.ctx)

    def launch(self, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs: Any) -> str:
        """Start serving without blocking; returns the local URL."""
        from vision.ui.static import mount_static

        self.demo.queue(default_concurrency_limit=4, max_size=64)
        # run_history=False: the browser must not keep past inputs (tokens, uploads) around.
        self.demo.launch(server_name=host, server_port=port, share=share, max_file_size=self.config.max_file_size,
                         prevent_thread_lock=True, run_history=False, **kwargs)
        mount_static(self.demo.app, self.config.web_dir, self.ctx.sessions)
        return self.demo.local_url

    def close(self) -> None:
        """Stop serving and remove every session's files and every export."""
        try:
            self.demo.close()
        finally:
            self.ctx.sessions.close_all()


def guard_pillow() -> None:
    """Make every ``Image.open`` in this process refuse decompression bombs from the header.

    Gradio decodes some inputs itself (webcam stream frames, data URLs) before our handlers
    run; Pillow raises ``DecompressionBombError`` above twice this value, so the app's own
    pixel cap then holds for those too.
    """
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2


def build(config: AppConfig) -> VisionApp:
    """Build the app for ``config`` (loads and compiles the default model first)."""
    guard_pillow()
    return VisionApp(config)
