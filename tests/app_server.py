"""Launch the real app on a free loopback port, over a private copy of the models folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def running(command: list[str], ready_url: str, timeout: float = 120, **popen: object) -> Iterator[subprocess.Popen]:
    """Run ``command`` until the block ends; enter once ``ready_url`` answers."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer means the server is up
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[:3]} exited with {process.returncode} before it was ready")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{ready_url} did not answer within {timeout:.0f} s")
                time.sleep(0.25)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
