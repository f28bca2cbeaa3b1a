"""The Gradio app, built from an ``AppConfig``: ``build(config).launch(...)``.

``layout`` wires the views (one module each: classify, live, train, models, hub, export);
``session`` holds what each visitor has; ``access`` decides who may do what.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from PIL import Image
from starlette.middleware import Middleware

from vision.data.images import MAX_PIXELS
from vision.defaults import EVERYDAY_MODEL
from vision.serve.webpage import WebPage
from vision.ui.cache import get_classifier, get_explainer
from vision.ui.config import AppConfig
from vision.ui.context import Context
from vision.ui.fairness import FairQueue
from vision.ui.feedback import FeedbackView
from vision.ui.layout import build_blocks
from vision.ui.owner import OWNER_PATH, mount_workbench, owner_context, wants_workbench
from vision.ui.static import missing_endpoint_handlers, static_routes
from vision.ui.train import TrainView
from vision.ui.upload_ceiling import UploadCeiling
from vision.zoo.everyday import ensure_everyday_bundle

#: The endpoints an MCP client may call (``AppConfig.mcp``), each a tool named after its handler.
MCP_TOOLS = ("/classify", "/explain")
#: How long ``close`` waits for the explainer's warm-up (the everyday model's takes seconds).
WARM_UP_TIMEOUT_S = 120.0


class VisionApp:
    """A built app: its Blocks, its sessions, and a ``close`` that removes every file it made."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        if config.default_model.resolve() == EVERYDAY_MODEL.resolve():
            ensure_everyday_bundle(EVERYDAY_MODEL)  # set-up does this; a Space's first start may not have
        self.ctx = Context.create(config)
        # The page runs the app's own model (never another), unless the owner left it out of the views.
        self.web_page = WebPage.for_model(config.web_dir, config.default_model) if config.shows("web") else None
        if self.web_page is not None:
            # A Space runs no set-up: TF.js and the page's model are prepared in a thread whose
            # export is a child process, started before anything else so that it runs on another
            # core while this process builds the views and converts the classifier (a cold
            # start's long steps side by side, not one after the other). ``close`` stops it.
            self.web_page.prepare_in_background()
        try:
            feedback = FeedbackView(self.ctx, TrainView(self.ctx))
            self.demo = build_blocks(self.ctx, feedback)
            # A demo's hidden views are not in its Blocks; the signed-in owner has them at /owner/,
            # with the visitors' reports the demo keeps.
            self.workbench = build_blocks(owner_context(self.ctx), feedback) if wants_workbench(self.ctx) else None
        except BaseException:
            self._stop_page()
            raise
        self._warming: threading.Thread | None = None

    def launch(self, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs: Any) -> str:
        """Start serving without blocking; returns the local URL."""
        try:
            # The classifier before serving: a broken bundle fails the start with a clear message,
            # and the first visitor does not wait for it (its TFLite conversion is cached on disk).
            get_classifier(self.config.default_model)
            self._serve(host, port, share, **kwargs)
        except BaseException:
            self._stop_page()  # a start that fails (a broken bundle, a busy port) leaves no export behind
            raise
        if self.config.mcp:
            _keep_mcp_tools(self.demo)
        # Grad-CAM's explainer loads the Keras model (seconds for the everyday-objects model):
        # build it once the server is up, so classification answers first and start-up stays short.
        self._warming = threading.Thread(target=_warm_explainer, args=(self.config.default_model,),
                                         name="warm-explainer", daemon=True)
        self._warming.start()
        return self.demo.local_url

    def _serve(self, host: str, port: int | None, share: bool, **kwargs: Any) -> None:
        # In public mode the direct /run/* routes are closed (api_open=False): they would skip
        # the queue, its concurrency groups and FairQueue's per-session shares.
        # The owner's workbench (public mode only) queues its events the same way.
        for blocks in [b for b in (self.demo, self.workbench) if b is not None]:
            blocks.queue(default_concurrency_limit=4, max_size=64, api_open=not self.config.public)
        # /web and /exports are routes of the FastAPI app Gradio creates, so they answer from the
        # first request; mounted after launch() they would answer 404 until then. The same goes
        # for middleware, which Starlette takes only before the app starts.
        # run_history=False: the browser must not keep past inputs (tokens, uploads) around.
        # An endpoint the app did not build (a view left out: /train on a demo) answers 404, not 500.
        app_kwargs = {"routes": static_routes(self.web_page, self.ctx.sessions),
                      "exception_handlers": missing_endpoint_handlers(),
                      "middleware": [Middleware(FairQueue, blocks=self.demo, shares=self.config.shares,
                                                 pace=self.config.serving.pace, exempt=f"{OWNER_PATH}/"),
                                      Middleware(UploadCeiling, cap_bytes=self.config.upload_cap_bytes)]}
        if self.workbench is not None:
            route, app_kwargs["lifespan"] = mount_workbench(self.ctx, self.workbench)
            app_kwargs["routes"].append(route)
        # _frontend=False skips Gradio's probe of its own index page (a HEAD with a 3 s timeout, meant
        # to detect Colab), which fails the start when the machine is busy, as a Space is while it
        # restarts. Gradio has already checked the server answers (its startup-events request).
        self.demo.launch(server_name=host, server_port=port, share=share, max_file_size=self.config.max_file_size,
                         prevent_thread_lock=True, run_history=False, app_kwargs=app_kwargs,
                         mcp_server=self.config.mcp, _frontend=False, **kwargs)

    def _stop_page(self) -> None:
        if self.web_page is not None:
            self.web_page.stop()

    def close(self) -> None:
        """Stop serving and remove every session's files and every export."""
        try:
            self.demo.close()
            if self.workbench is not None:
                self.workbench.close()
        finally:
            self.ctx.sessions.close_all()
            self._stop_page()  # its export is a child process: stopped, then its thread ends
            # A process that exits while TensorFlow is still building the explainer in that
            # thread aborts ("FATAL: exception not rethrown"): let it finish first.
            if self._warming is not None:
                self._warming.join(WARM_UP_TIMEOUT_S)
            if self.web_page is not None:
                self.web_page.wait(WARM_UP_TIMEOUT_S)


def _keep_mcp_tools(demo: Any) -> None:
    """Leave only ``MCP_TOOLS`` as tools. Gradio makes every named endpoint one (train, push,
    export...); its ``tool_to_endpoint`` map is what both listing and calling a tool consult."""
    server = demo.mcp_server_obj
    if server is None:  # Gradio logs why and serves the app without MCP
        logging.getLogger(__name__).error("MCP is not served: %s", demo.mcp_error)
        return
    tools = server.tool_to_endpoint
    for name in [name for name, endpoint in tools.items() if endpoint not in MCP_TOOLS]:
        del tools[name]


def _warm_explainer(model: Any) -> None:
    try:
        get_explainer(model)
    except Exception as error:  # the first explain request reports it to the visitor
        logging.getLogger(__name__).warning("Grad-CAM is not ready for %s: %s", model, error)


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
