"""``VisionError`` becomes a message in the UI; anything else is logged as the bug it is."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import gradio as gr

from vision.errors import VisionError

log = logging.getLogger("vision.app")


def _translate(error: Exception, where: str) -> gr.Error:
    if isinstance(error, VisionError):
        return gr.Error(str(error))
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
