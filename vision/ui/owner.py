"""The owner's workbench beside a demo.

A public app that shows visitors only some views (``--views``, ``--demo``) does not build the
others into the Blocks visitors load, so their API routes do not exist there. The owner still
sees everything: the whole app is a second Blocks mounted at ``/owner/``, which Gradio serves
only to the owner, for the page and every route under it. On a Space that is a request whose
"Sign in with Hugging Face" session names ``VISION_OWNER`` (``mount_gradio_app``'s
``auth_dependency``; anyone else gets 401). Elsewhere there is no real sign-in, so Gradio's own
login form asks for the owner's Hub name and a token of theirs, which the Hub confirms. The
workbench shares the visitors' sessions, models, training slot and feedback, and stays in public
mode, so its owner-only actions check the owner again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import gradio as gr
from fastapi import FastAPI
from starlette.routing import BaseRoute

from vision.errors import VisionError
from vision.hub import whoami
from vision.ui.config import VIEWS
from vision.ui.context import Context

#: Where the owner's workbench is mounted.
OWNER_PATH = "/owner"


def wants_workbench(ctx: Context) -> bool:
    """Whether this app mounts the owner's workbench: public, with a named owner, and hiding
    some of the workbench's views from visitors (the page alone is not one: it has no owner's side)."""
    config = ctx.config
    return config.public and config.owner is not None and any(
        not config.shows(view) for view in VIEWS if view != "web")


def owner_link(ctx: Context) -> str:
    """The demo's link to the workbench: on a Space through Gradio's sign-in, which comes back to
    it; elsewhere to the workbench's login form."""
    return f"/login/huggingface?_target_url={OWNER_PATH}/" if ctx.config.oauth else f"{OWNER_PATH}/"


def signed_in_owner(owner: str) -> Callable[[Any], str | None]:
    """``auth_dependency`` for the workbench: the owner's name when the request's sign-in session
    (Gradio's OAuth cookie, signed by its session middleware) names ``owner`` and has not expired."""
    def user(request: Any) -> str | None:
        info = (request.scope.get("session") or {}).get("oauth_info") or {}
        name = (info.get("userinfo") or {}).get("preferred_username")
        return owner if name == owner and info.get("expires_at", 0) > time.time() else None
    return user


def owner_token_login(owner: str) -> Callable[[str, str], Awaitable[bool]]:
    """``mount_gradio_app``'s ``auth`` off a Space: the user name ``owner`` and a token the Hub
    says is theirs. Asked in a thread, since Gradio awaits it on the event loop."""
    async def login(username: str, password: str) -> bool:
        if username.strip() != owner or not password.strip():
            return False
        try:
            return await asyncio.to_thread(whoami, password.strip()) == owner
        except VisionError:  # a rejected token, an unreachable Hub
            return False
    return login


def owner_context(ctx: Context) -> Context:
    """``ctx`` with every view shown (the page where the app serves it), sharing its sessions,
    catalog and training slot."""
    views = tuple(view for view in VIEWS if view != "web" or ctx.config.shows("web"))
    return dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, views=views))


def mount_workbench(ctx: Context, blocks: gr.Blocks) -> tuple[BaseRoute, Callable[[Any], Any]]:
    """The route that serves ``blocks`` (queued already) at ``OWNER_PATH`` to the signed-in owner,
    and the lifespan that starts its queue. Both go to the app Gradio creates at launch
    (``app_kwargs``), so the workbench answers from the first request like the rest of the app."""
    # mount_gradio_app does Blocks' launch-time set-up, then mounts on the app it is given: a
    # shell here, whose one route and lifespan are handed on.
    owner = str(ctx.config.owner)
    gate = {"auth_dependency": signed_in_owner(owner)} if ctx.config.oauth else \
        {"auth": owner_token_login(owner), "auth_message": f"The workbench is {owner}'s: their Hub name, "
                                                          "and a Hub token of theirs as the password."}
    shell = FastAPI()
    gr.mount_gradio_app(shell, blocks, OWNER_PATH, max_file_size=ctx.config.max_file_size, ssr_mode=False,
                        mcp_server=False, run_history=False, **gate)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with shell.router.lifespan_context(shell):
            yield

    return shell.routes[-1], lifespan
