"""The owner's workbench beside a demo.

A public app that shows visitors only some views (``--views``, ``--demo``) does not build the
others into the Blocks visitors load, so their API routes do not exist there. The owner still
sees everything: the whole app is a second Blocks mounted at ``/owner/``, which Gradio serves
only to a request whose "Sign in with Hugging Face" session names ``VISION_OWNER``
(``mount_gradio_app``'s ``auth_dependency``; anyone else gets 401, for the page and every
route under it). It shares the visitors' sessions, models and training slot, and stays in
public mode, so its owner-only actions check the same sign-in again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import gradio as gr
from fastapi import FastAPI
from starlette.routing import BaseRoute

from vision.ui.context import Context

#: Where the owner's workbench is mounted.
OWNER_PATH = "/owner"
#: The link to it: Gradio's sign-in, which comes back to the workbench.
OWNER_LINK = f"/login/huggingface?_target_url={OWNER_PATH}/"


def wants_workbench(ctx: Context) -> bool:
    """Whether this app mounts the owner's workbench: public, showing visitors only some views,
    with a named owner who can be recognised (a real sign-in, on a Space with ``hf_oauth``)."""
    config = ctx.config
    return config.public and config.views is not None and config.oauth and config.owner is not None


def signed_in_owner(owner: str) -> Callable[[Any], str | None]:
    """``auth_dependency`` for the workbench: the owner's name when the request's sign-in session
    (Gradio's OAuth cookie, signed by its session middleware) names ``owner`` and has not expired."""
    def user(request: Any) -> str | None:
        info = (request.scope.get("session") or {}).get("oauth_info") or {}
        name = (info.get("userinfo") or {}).get("preferred_username")
        return owner if name == owner and info.get("expires_at", 0) > time.time() else None
    return user


def owner_context(ctx: Context) -> Context:
    """``ctx`` with every view shown, sharing its sessions, catalog and training slot."""
    return dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, views=None))


def mount_workbench(ctx: Context, blocks: gr.Blocks) -> tuple[BaseRoute, Callable[[Any], Any]]:
    """The route that serves ``blocks`` at ``OWNER_PATH`` to the signed-in owner, and the lifespan
    that starts its queue. Both go to the app Gradio creates at launch (``app_kwargs``), so the
    workbench answers from the first request like the rest of the app."""
    blocks.queue(default_concurrency_limit=4, max_size=64, api_open=False)
    # mount_gradio_app does Blocks' launch-time set-up, then mounts on the app it is given: a
    # shell here, whose one route and lifespan are handed on.
    shell = FastAPI()
    gr.mount_gradio_app(shell, blocks, OWNER_PATH, auth_dependency=signed_in_owner(str(ctx.config.owner)),
                        max_file_size=ctx.config.max_file_size, ssr_mode=False, mcp_server=False,
                        run_history=False)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with shell.router.lifespan_context(shell):
            yield

    return shell.routes[-1], lifespan
