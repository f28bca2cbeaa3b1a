"""The Models view: the models this session can see, its active one, and the owner's
publish and delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from vision.bundle.store import CONFUSION_FILE, CURVES_FILE, RELIABILITY_FILE, copy_bundle, delete_bundle
from vision.errors import AccessDeniedError, BundleExistsError
from vision.ui import access
from vision.ui.cache import forget, get_bundle, get_classifier
from vision.ui.catalog import MINE, SHARED
from vision.ui.context import Context
from vision.ui.errors import user_errors
from vision.ui.session import DEFAULT_KEY

HEADERS = ["key", "name", "architecture", "classes", "val accuracy", "created"]


class ModelsView:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def table(self, request: gr.Request) -> list[list[Any]]:
        return self.ctx.catalog.rows(self.ctx.session(request))

    def names(self, request: gr.Request) -> list[str]:
        """The keys of the models this session can use (for gradio_client)."""
        return list(self.ctx.catalog.visible(self.ctx.session(request)))

    def refresh(self, request: gr.Request) -> tuple[Any, list[list[Any]]]:
        """The dropdown (on the active model) and the table, for this session."""
        session = self.ctx.session(request)
        self.ctx.catalog.active(session)
        return gr.Dropdown(choices=self.ctx.catalog.choices(session), value=session.active), self.table(request)

    @user_errors
    def show(self, key: str, request: gr.Request) -> tuple[str, Any, Any, Any]:
        """The model card and plots of ``key`` (only a model this session can see)."""
        folder = self.ctx.catalog.resolve(self.ctx.session(request), key)
        card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
        card = card.split("---", 2)[2] if card.startswith("---") else card  # hide the YAML header
        pictures = [folder / name for name in (CURVES_FILE, CONFUSION_FILE, RELIABILITY_FILE)]
        curves, confusion, reliability = (Image.open(p).convert("RGB") if p.is_file() else None for p in pictures)
        return f"**{get_bundle(folder).name}** (`{key}`)\n\n{card}", curves, confusion, reliability

    @user_errors
    def use(self, key: str, request: gr.Request) -> str:
        session = self.ctx.session(request)
        folder = self.ctx.catalog.resolve(session, key)
        get_classifier(folder)  # load (and cache) now, so the first prediction is fast
        session.active = key
        return f"Using **{get_bundle(folder).name}** in this browser session."

    @user_errors
    def delete(self, key: str, owner_token: str, request: gr.Request,
               profile: gr.OAuthProfile | None) -> tuple[list[list[Any]], Any, str]:
        """Delete one of this session's models, or (owner only) a shared one not in use."""
        session = self.ctx.session(request)
        folder = self.ctx.catalog.resolve(session, key)
        if key == DEFAULT_KEY:
            raise AccessDeniedError("the default model cannot be deleted")
        if key.startswith(SHARED):
            access.require_owner(self.ctx.config, owner_token, profile, "delete shared models")
            users = self.ctx.sessions.users_of(key, besides=session)
            if users:
                raise AccessDeniedError(f"'{key}' is in use by {users} other session(s); try again later")
        else:
            session.models.pop(key)
        delete_bundle(folder)
        forget(folder)
        if session.active == key:
            session.active = DEFAULT_KEY
        dropdown, table = self.refresh(request)
        return table, dropdown, f"Deleted **{key}**."

    @user_errors
    def publish(self, key: str, owner_token: str, request: gr.Request,
                profile: gr.OAuthProfile | None) -> tuple[list[list[Any]], Any, str]:
        """Owner only: copy one of this session's models into the shared models folder."""
        session = self.ctx.session(request)
        folder = self.ctx.catalog.resolve(session, key)
        access.require_owner(self.ctx.config, owner_token, profile, "publish models to everyone")
        if not key.startswith(MINE):
            raise BundleExistsError(f"'{key}' is already shared")
        name = Path(key[len(MINE):]).name
        copy_bundle(folder, self.ctx.config.models_dir / name)
        dropdown, table = self.refresh(request)
        return table, dropdown, f"Published **{name}** for every visitor as `{SHARED + name}`."
