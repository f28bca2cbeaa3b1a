"""Launch the real app on a free loopback port, over a private copy of the models folder."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from conftest import DEFAULT_MODEL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_app(models_dir: Path) -> tuple[object, str]:
    """Start ``app.create_app()`` with ``models_dir`` holding a copy of the default model."""
    import app

    shutil.copytree(DEFAULT_MODEL, models_dir / "shapes")
    app.MODELS_DIR = models_dir
    app.DEFAULT_MODEL = models_dir / "shapes"
    demo = app.create_app()
    demo.queue(default_concurrency_limit=4, max_size=64)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=app.MAX_FILE_SIZE, run_history=False)
    app.mount_static(demo)
    return demo, f"http://127.0.0.1:{port}/"
