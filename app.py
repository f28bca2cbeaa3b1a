"""The Gradio app: classify, live webcam, explain, train, manage and export models.

    python app.py [--model PATH|hf://user/repo] [--views classify,live,web | --demo] [--host HOST]
                  [--port PORT] [--share] [--mcp]

Environment: VISION_MODEL, VISION_MODELS_DIR, MODEL_REPO, VISION_HOST (or
GRADIO_SERVER_NAME), VISION_PORT (or GRADIO_SERVER_PORT), VISION_SHARE=1, VISION_MCP=1, and for
sharing publicly VISION_PUBLIC, VISION_OWNER, VISION_VIEWS (see the README). Wiring only: the views
are in ``vision.ui``, the work in ``vision``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("SPACE_ID"):
    # On a Space every request comes through Hugging Face's proxy (only it can reach the
    # container), so the X-Forwarded-For hop it appends, the rightmost, is the visitor
    # (vision.serve.client). Not uvicorn's FORWARDED_ALLOW_IPS=*: that takes the leftmost
    # entry, which the visitor writes, and every per-client limit would be a header away.
    os.environ.setdefault("VISION_TRUSTED_PROXIES", "*")

from vision.errors import VisionError  # noqa: E402
from vision.ui import build  # noqa: E402
from vision.ui.config import AppConfig, parse_views  # noqa: E402


def start_model(flag: str | None, env: dict[str, str] | None = None) -> Path | None:
    """The model to start on: --model, else MODEL_REPO (a Hub repo: the Space case), else
    None (VISION_MODEL or the bundled default). Hub models are pulled with the server's
    HF_TOKEN: the one use of that token in public mode."""
    from vision.hub import resolve_model

    env = os.environ if env is None else env
    ref = flag or (f"hf://{env['MODEL_REPO']}" if env.get("MODEL_REPO") else None)
    return None if ref is None else resolve_model(ref)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Image classifier app")
    parser.add_argument("--model", default=None,
                        help="bundle folder or hf://user/repo[@rev] to start on (env VISION_MODEL, or MODEL_REPO "
                             "for a Hub repo)")
    parser.add_argument("--host", default=os.environ.get("VISION_HOST", os.environ.get("GRADIO_SERVER_NAME",
                                                                                         "127.0.0.1")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("VISION_PORT",
                                                                       os.environ.get("GRADIO_SERVER_PORT", 7860))))
    parser.add_argument("--views", default=None,
                        help="what visitors see in public mode, e.g. classify,live,web (env VISION_VIEWS; default: "
                             "every view); views left out are not built, and their API does not exist")
    parser.add_argument("--demo", action="store_true",
                        help="a plain demo for visitors: --views classify,live,web, and --mcp")
    parser.add_argument("--mcp", action="store_true",
                        help="serve classify and explain as MCP tools at /gradio_api/mcp/ (env VISION_MCP=1; on "
                             "with --demo)")
    parser.add_argument("--share", action="store_true", default=os.environ.get("VISION_SHARE") == "1",
                        help="create a temporary public link (needs internet)")
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("VISION_GRPC_PORT", 0)) or None,
                        help="also serve TF Serving's gRPC API on this port (env VISION_GRPC_PORT; default: off; "
                             "a Hugging Face Space exposes one HTTP port only, so not there)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = AppConfig.from_env(default_model=start_model(args.model))
        if args.demo or args.views:
            config = dataclasses.replace(config, views=parse_views("demo" if args.demo else args.views))
        if args.mcp or args.demo:
            config = dataclasses.replace(config, mcp=True)
        app = build(config)
    except VisionError as error:
        parser.exit(2, f"error: {error}\n")
    mode = f"public (owner: {config.owner or 'none'})" if config.public else "private (you are the owner)"
    logging.getLogger("vision.app").info("starting in %s mode", mode)
    if config.views and not config.public:
        logging.getLogger("vision.app").info("--views applies to visitors in public mode (VISION_PUBLIC=1); in "
                                             "private mode you are the owner and see every view")
    # SIGTERM is how Spaces, containers and systemd stop an app: make it a Ctrl-C, so the
    # same clean-up runs (sessions, exports and the temporary folder are removed).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        try:
            app.launch(args.host, args.port, share=args.share)
        except VisionError as error:  # the model's own files failed to load: said in one line
            parser.exit(2, f"error: {error}\n")
        if args.grpc_port:
            from vision.ui.serving import start_grpc_server

            start_grpc_server(config, args.grpc_port, args.host)
            logging.getLogger("vision.app").info("TF Serving gRPC API on %s:%d", args.host, args.grpc_port)
        app.demo.block_thread()
    finally:
        app.close()


if __name__ == "__main__":
    main()
