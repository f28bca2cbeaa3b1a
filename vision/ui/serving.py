"""The app's models as the serving protocols see them (``vision.serve``): the shared catalog, no
session's own models, and the app's caches, so REST, gRPC and the UI run one loaded copy."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vision.serve.models import ServedModels
from vision.serve.rest import ServingAPI
from vision.ui.cache import get_bundle, get_classifier
from vision.ui.catalog import Catalog
from vision.ui.config import AppConfig
from vision.ui.session import Session

#: A protocol caller's "session": no models of its own, so ``Catalog.resolve`` finds only shared ones.
_NO_SESSION = Session(root=Path("/nonexistent"))
#: The app's ``ServingAPI`` per config (one app per config; the config is kept so its id stays its own).
_APIS: dict[int, tuple[AppConfig, ServingAPI]] = {}
_LOCK = threading.Lock()


def served_models(config: AppConfig) -> ServedModels:
    """What the app serves over its APIs, for ``config``."""
    catalog = Catalog(config)
    return ServedModels(resolve=lambda name: catalog.resolve(_NO_SESSION, name), bundle=get_bundle,
                        classifier=get_classifier, max_file_size=config.max_file_size, public=config.public)


def serving_api(config: AppConfig) -> ServingAPI:
    """The one ``ServingAPI`` of the app built from ``config``: REST and gRPC share its token
    buckets, so a client has one rate limit whichever protocol it speaks."""
    with _LOCK:
        found = _APIS.get(id(config))
        if found is None or found[0] is not config:  # an id is reused only once its config is gone
            found = _APIS[id(config)] = (config, ServingAPI(served_models(config), config.serving))
        return found[1]


def start_grpc_server(config: AppConfig, port: int, host: str = "[::]") -> Any:
    """TF Serving's gRPC API for the app's models on ``port`` (``app.py --grpc-port``); returns the
    started ``grpc.Server``. Imported here, not at the top: grpc and the TF Serving protos load only
    when the owner turns gRPC on."""
    from vision.serve.grpc_api import start_grpc  # lazy: grpc and TF Serving's protos load only with gRPC on

    return start_grpc(serving_api(config), port, host)
