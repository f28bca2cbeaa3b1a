"""Which models a session can see, and what their keys mean.

A model is named in the UI and the API by a key, never by a server path:
``default`` (the configured start model), ``shared/<folder>`` (the models folder, what the
owner published) and ``mine/<name>`` (trained or pulled by this session, seen by it alone).
Any other value gets the same "unknown model" answer, so probing reveals nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vision.bundle.store import list_bundles, read_info
from vision.errors import ModelNotFoundError, VisionError
from vision.ui.config import AppConfig
from vision.ui.session import DEFAULT_KEY, Session

SHARED, MINE = "shared/", "mine/"
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_@.-]{0,127}$")  # one plain folder name: no "/", no ".."


class Catalog:
    def __init__(self, config: AppConfig) -> None:
        self.config = config

    def shared(self) -> dict[str, Path]:
        """The default model, then every bundle in the models folder."""
        default = self.config.default_model.resolve()
        found = {DEFAULT_KEY: default}
        for info in list_bundles(self.config.models_dir):
            path = Path(info["path"]).resolve()
            if path != default:
                found[SHARED + path.name] = path
        return found

    def visible(self, session: Session) -> dict[str, Path]:
        return {**self.shared(), **session.models}

    def resolve(self, session: Session, key: str | None) -> Path:
        """The folder behind ``key`` if this session may use it.

        Raises:
            ModelNotFoundError: the same message whether or not anything exists there.
        """
        # Per request (every prediction asks): no listing of the models folder.
        key = key or ""
        folder = session.models.get(key)
        if key == DEFAULT_KEY:
            folder = self.config.default_model.resolve()
        elif key.startswith(SHARED) and _FOLDER.match(key[len(SHARED):]):
            candidate = (self.config.models_dir / key[len(SHARED):]).resolve()
            if (candidate / "vision.json").is_file() and candidate != self.config.default_model.resolve():
                folder = candidate
        if folder is None:
            raise ModelNotFoundError(f"unknown model {key[:80]!r}: choose one listed in the Models tab")
        return folder

    def active(self, session: Session) -> Path:
        """The session's model; back to the default if its model has gone."""
        try:
            return self.resolve(session, session.active)
        except ModelNotFoundError:
            session.active = DEFAULT_KEY
            return self.resolve(session, DEFAULT_KEY)

    def choices(self, session: Session) -> list[tuple[str, str]]:
        """(label, key) pairs for a dropdown."""
        return [(self.label(key, folder), key) for key, folder in self.visible(session).items()]

    def label(self, key: str, folder: Path) -> str:
        name = self.info(folder).get("name") or folder.name
        where = "default" if key == DEFAULT_KEY else "yours" if key.startswith(MINE) else "shared"
        return f"{name} ({where})"

    def rows(self, session: Session) -> list[list[Any]]:
        """One table row per visible model."""
        rows = []
        for key, folder in self.visible(session).items():
            info = self.info(folder)
            accuracy = info.get("metrics", {}).get("accuracy")
            rows.append([key, info.get("name", folder.name), info.get("architecture", "?"),
                         ", ".join(info.get("labels", [])), "" if accuracy is None else round(accuracy, 4),
                         info.get("created", "")])
        return rows

    @staticmethod
    def info(folder: Path) -> dict[str, Any]:
        try:
            return read_info(folder)
        except VisionError:  # a half-deleted folder: list it by name only
            return {}
