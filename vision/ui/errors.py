"""``VisionError`` becomes a message in the UI; anything else is logged as the bug it is.

What a visitor reads never names a server folder: the library's messages are written for
the person at the terminal and often carry a full path (a bundle's folder, a snapshot in the
Hub cache, a converter's scratch folder). ``for_visitor`` keeps only each path's last part,
which is the name the visitor knows the file or model by; the full text goes to the log.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import gradio as gr

from vision.errors import VisionError
from vision.redact import without_paths

log = logging.getLogger("vision.app")


def for_visitor(message: str) -> str:
    """``message`` with every absolute path cut to its last part (``/srv/x/models/pets`` -> ``pets``)."""
    return without_paths(message)


def _translate(error: Exception, where: str) -> gr.Error:
    if isinstance(error, VisionError):
        message = str(error)
        shown = for_visitor(message)
        if shown != message:
            log.info("%s: %s", where, message)  # the full text, paths and all, for the server's log only
        log.debug("visitor sees: %s", shown)
        return gr.Error(shown)
    log.exception("unexpected error in %s", where)
    return gr.Error(f"Something went wrong ({type(error).__name__}); see the server log.")


def user_errors(fn: Callable) -> Callable:
    """Wrap a handler (plain or generator) so users see one clear line, never a traceback."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:
                raise _translate(error, fn.__qualname__) from None
        return generator

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            raise _translate(error, fn.__qualname__) from None
    return plain
