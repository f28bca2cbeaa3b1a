"""The Hub view: push the active model, pull one from the Hub into this session.

Tokens are used for the one call and never stored, logged or echoed. Which token a call
may use is decided in ``vision.ui.access``: in public mode only the visitor's own. A
visitor's pull is bounded by what is left of their session's disk quota, and its messages
name the repo and its files, never a folder on the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from vision.errors import AccessDeniedError, LimitExceededError
from vision.hub import TokenRejectedError, named_paths, parse_ref, pull, push
from vision.ui import access
from vision.ui.cache import get_bundle, get_classifier
from vision.ui.catalog import MINE
from vision.ui.context import Context
from vision.ui.errors import user_errors


class HubView:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @user_errors
    def push(self, repo_id: str, private: bool, with_tfjs: bool, token: str, request: gr.Request,
             oauth_token: gr.OAuthToken | None, profile: gr.OAuthProfile | None,
             progress: gr.Progress = gr.Progress()) -> str:
        config = self.ctx.config
        session, folder = self.ctx.active_model(request)
        credential = access.require_hub_credentials(config, token, oauth_token)
        if config.public and not session.active.startswith(MINE) and not access.is_owner(config, token, profile):
            raise AccessDeniedError("visitors push the models they trained or pulled in this session; "
                                    "pick one of yours in the Models tab")
        progress(0.1, desc="uploading")
        with _token_hint(config.public, token):
            url = push(folder, (repo_id or "").strip(), token=credential, private=bool(private),
                       exports=("tfjs",) if with_tfjs else ())
        return f"Pushed **{get_bundle(folder).name}** → [{url}]({url})"

    @user_errors
    def pull(self, repo_id: str, token: str, request: gr.Request, oauth_token: gr.OAuthToken | None,
             progress: gr.Progress = gr.Progress()) -> tuple[str, Any]:
        """Download a bundle into this session (its own cache in public mode) and use it."""

        config = self.ctx.config
        session = self.ctx.session(request)
        repo, revision = parse_ref((repo_id or "").strip())
        key = MINE + repo.replace("/", "--") + (f"@{revision}" if revision else "")
        limit_mb = config.limits.session_disk_mb
        if config.public and key not in session.models:
            if len(session.models) >= config.limits.models_per_session:
                raise LimitExceededError(f"a session keeps at most {config.limits.models_per_session} models: "
                                         "delete one in the Models tab first")
            session.check_disk(limit_mb)
        progress(0.1, desc="downloading")
        # Public mode: a private cache per session, so one visitor's private download is
        # never served from the cache to another; and no more than the session has room for.
        cache = session.root / "hub" if config.public else None
        room = max(0, int(limit_mb * 1e6) - session.disk_bytes()) if config.public else None
        with _token_hint(config.public, token), _quota_explained(limit_mb if config.public else None):
            folder = pull(repo, revision=revision, token=access.hub_token(config, token, oauth_token),
                          cache_dir=cache, max_bytes=room)
        with named_paths({folder: repo}):
            get_classifier(folder)
        session.models[key] = folder
        session.active = key
        message = f"Pulled **{get_bundle(folder).name}** from `{repo_id}`; this session now uses it."
        return message, gr.Dropdown(choices=self.ctx.catalog.choices(session), value=key)


@contextmanager
def _token_hint(public: bool, typed: str | None) -> Iterator[None]:
    """Add to a rejected token's message what this caller can do about it. A visitor is never
    told about the server's ``HF_TOKEN``: that is the owner's business, not theirs."""
    try:
        yield
    except TokenRejectedError as error:
        if (typed or "").strip():
            hint = "check the token you entered"
        elif public:
            hint = "sign in with Hugging Face again, or paste a token of your own"
        else:
            hint = "set HF_TOKEN on the server or run `hf auth login` there, or paste a token"
        raise TokenRejectedError(f"{error}: {hint}") from None


@contextmanager
def _quota_explained(limit_mb: int | None) -> Iterator[None]:
    """Say where a pull's byte cap comes from: what is left of the session's disk quota
    (``limit_mb``; None: no quota, nothing to explain)."""
    try:
        yield
    except LimitExceededError as error:
        if limit_mb is None:
            raise
        raise LimitExceededError(f"{error} (what is left of this session's {limit_mb} MB): delete one of your "
                                 "models in the Models tab first") from None
