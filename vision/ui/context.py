"""What every view is handed: the settings, the sessions and the model catalog."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vision.ui.catalog import Catalog
from vision.ui.config import AppConfig
from vision.ui.session import Session, SessionRegistry


@dataclass(frozen=True)
class Context:
    config: AppConfig
    sessions: SessionRegistry
    catalog: Catalog
    #: One training at a time in this app, held by the training's own thread (``TrainingJob``).
    training_slot: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, config: AppConfig) -> "Context":
        return cls(config, SessionRegistry(config), Catalog(config))

    def session(self, request: Any) -> Session:
        return self.sessions.get(request)

    def active_model(self, request: Any) -> tuple[Session, Path]:
        """The caller's session and the folder of its active model."""
        session = self.sessions.get(request)
        return session, self.catalog.active(session)
