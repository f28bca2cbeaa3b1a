"""Routes beside the UI: the client-side page at /web, live exports at /exports, and TF Serving's
REST API at /v1/models (``vision.ui.serving_rest``)."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from vision.export.formats import WEB_FILES, WEB_VENDOR
from vision.export.webpage import WebPage
from vision.ui.serving_rest import serving_routes
from vision.ui.session import SessionRegistry


class WebFiles(StaticFiles):
    """Only the page, its libraries and the shipped model's own files (those its model.json
    names): not package.json, tests, dotfiles, ...; "503, being prepared" while a fresh Space
    installs TF.js (``vision.export.webpage``)."""

    def __init__(self, page: WebPage) -> None:
        super().__init__(directory=page.web_dir, html=True, check_dir=False)
        self.page = page
        self.allowed = set(WEB_FILES) | {f"node_modules/{name}" for name in WEB_VENDOR}

    async def get_response(self, path: str, scope: Any) -> Any:
        if not self.page.ready:
            raise HTTPException(status_code=503, detail=(
                "The in-browser page is being prepared (installing TF.js, exporting the model): reload in a "
                "minute." if self.page.preparing else f"The in-browser page is not available: {self.page.error}"))
        if not self._allowed(path):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def _allowed(self, path: str) -> bool:
        # ``path`` is already normalised by StaticFiles (no "..", no "."), so exact names suffice.
        folder, _, name = path.partition("/")
        if folder == "model":
            return name in self.page.model_files
        return path in self.allowed or path in (".", "")


class ExportFiles(StaticFiles):
    """``/exports/<id>/<file>`` for exports whose session is still open; no listings."""

    def __init__(self, sessions: SessionRegistry) -> None:
        sessions.exports_root.mkdir(parents=True, exist_ok=True)
        super().__init__(directory=sessions.exports_root)
        self.sessions = sessions

    async def get_response(self, path: str, scope: Any) -> Any:
        export_id, _, rest = path.partition("/")
        if not rest or self.sessions.export_folder(export_id) is None:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def static_routes(page: WebPage, sessions: SessionRegistry) -> list[BaseRoute]:
    """/web, /exports and /v1/models, for the FastAPI app Gradio creates (``launch(app_kwargs=
    {"routes": ...})``): routes that exist when the app is made answer from the server's first
    request. Mounted after ``launch`` instead, they answer 404 until then."""
    return [Mount("/web", WebFiles(page), name="web"), Mount("/exports", ExportFiles(sessions), name="exports"),
            *serving_routes(sessions.config)]
