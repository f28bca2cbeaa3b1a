"""The app's models as the serving protocols see them (``vision.serve``): the shared catalog, no
session's own models, and the app's caches, so REST, gRPC and the UI run one loaded copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vision.serve.models import ServedModels
from vision.ui.cache import get_bundle, get_classifier
from vision.ui.catalog import Catalog
from vision.ui.config import AppConfig
from vision.ui.session import Session

#: A protocol caller's "session": no models of its own, so ``Catalog.resolve`` finds only shared ones.
_NO_SESSION = Session(root=Path("/nonexistent"))


def served_models(config: AppConfig) -> ServedModels:
    """What the app serves over its APIs, for ``config``."""
    catalog = Catalog(config)
    return ServedModels(resolve=lambda name: catalog.resolve(_NO_SESSION, name), bundle=get_bundle,
                        classifier=get_classifier, max_file_size=config.max_file_size, public=config.public)


def start_grpc_server(config: AppConfig, port: int, host: str = "[::]") -> Any:
    """TF Serving's gRPC API for the app's models on ``port`` (``app.py --grpc-port``); returns the
    started ``grpc.Server``. Imported here, not at the top: grpc and the TF Serving protos load only
    when the owner turns gRPC on."""
    from vision.serve.grpc_api import start_grpc
    from vision.serve.rest import ServingAPI

    return start_grpc(ServingAPI(served_models(config), config.serving), port, host)
