"""A TensorBoard on loopback, to read the logs ``vision.training.tensorboard`` writes.

``start_tensorboard`` serves a log folder on 127.0.0.1. TensorBoard's front end comes from
its own wheel (``tensorboard/webfiles.zip``: the page, its script, the Roboto fonts, the
Monaco editor): nothing from a CDN. The one third-party URL its script could load, Polymer's
Google Fonts stylesheet, is switched off by the script's first line
(``window.polymerSkipLoadingFontRoboto = true``). ``tests/test_tensorboard.py`` checks both.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vision.errors import VisionError

#: How often the server looks for new events (TensorBoard's default).
RELOAD_SECONDS = 5

_servers: dict[str, tuple[str, Any]] = {}  # resolved log folder -> (URL, server)
_servers_lock = threading.Lock()


def start_tensorboard(logdir: str | Path, reload_seconds: int = RELOAD_SECONDS) -> str:
    """Serve ``logdir`` with TensorBoard on 127.0.0.1 at a free port and return its URL
    (``http://127.0.0.1:PORT/``); later calls for the same folder return the same server.

    TensorBoard's own ``launch()``: its web server runs in a daemon thread of this process, and
    event files are read by the Rust data server its wheel ships (``--load_fast=auto``, its
    default), a child process that exits with this one. Not the Python reader: its thread reads
    through TensorFlow and, caught reading when the process exits, aborts it ("FATAL: exception
    not rethrown"); it remains the fallback where the data server is unavailable. It serves
    anyone who can reach loopback on this machine, without a login.

    Raises:
        VisionError: TensorBoard could not start (its message says why).
    """
    key = str(Path(logdir).resolve())
    with _servers_lock:
        if key in _servers:
            return _servers[key][0]
        from tensorboard import program  # lazy: imports every TensorBoard plugin

        made: list[Any] = []

        def server(app: Any, flags: Any) -> Any:  # keeps the server, so it can be stopped
            made.append(program.WerkzeugServer(app, flags))
            return made[-1]

        board = program.TensorBoard(server_class=server)
        try:
            board.configure(argv=[None, "--logdir", key, "--host", "127.0.0.1", "--port", "0",
                                  "--load_fast", "auto", "--reload_interval", str(reload_seconds)])
            url = board.launch()
        except program.TensorBoardServerException as error:
            raise VisionError(f"TensorBoard could not start: {error.msg}") from None
        _servers[key] = (url, made[-1])
        return url


def stop_tensorboard(logdir: str | Path) -> bool:
    """Stop the server ``start_tensorboard`` started for ``logdir``; False if none runs.

    Its port closes; its data server, which TensorBoard gives no stop, idles until the process ends.
    """
    with _servers_lock:
        entry = _servers.pop(str(Path(logdir).resolve()), None)
    if entry is None:
        return False
    entry[1].shutdown()
    entry[1].server_close()
    return True
