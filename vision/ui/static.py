"""Routes beside the UI: the client-side page at /web, live exports at /exports, and TF Serving's
REST API at /v1/models (``vision.serve.rest``)."""

from __future__ import annotations

import html
from typing import Any

from gradio.route_utils import FnIndexInferError
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from vision.export.formats import WEB_FILES, WEB_VENDOR
from vision.serve.rest import serving_routes
from vision.serve.webpage import WebPage
from vision.ui.serving import serving_api
from vision.ui.session import SessionRegistry

#: What the page reads to present the model (title, description, classes, figures, author).
CARD_FILE = "card.json"


class WebFiles(StaticFiles):
    """Only the page, its libraries and the app's model's own files (those its model.json
    names, from ``page.model_dir``) and ``model/card.json`` (what the page says of the model):
    not package.json, tests, dotfiles, ...; "503, being prepared" while a fresh Space installs
    TF.js or the model is exported (``vision.serve.webpage``), and a page naming the model and
    the reason where the browser cannot run it."""

    def __init__(self, page: WebPage) -> None:
        super().__init__(directory=page.web_dir, html=True, check_dir=False)
        self.page = page
        self.allowed = set(WEB_FILES) | {f"node_modules/{name}" for name in WEB_VENDOR}

    async def get_response(self, path: str, scope: Any) -> Any:
        if not self.page.ready:
            return self._unavailable(path)
        if not self._allowed(path):
            raise HTTPException(status_code=404)
        folder, _, name = path.partition("/")
        if folder == "model":
            if name == CARD_FILE:
                return JSONResponse(self.page.card)
            return FileResponse(self.page.model_dir / name)  # a name model.json lists (checked above)
        return await super().get_response(path, scope)

    def _unavailable(self, path: str) -> Response:
        """503 with why: for the page itself, a small page naming the model (visitors open it)."""
        why = ("The in-browser page is being prepared (installing TF.js, exporting the model): reload in a "
               "minute." if self.page.preparing else f"The in-browser page is not available: {self.page.error}")
        if path not in (".", "", "index.html"):
            raise HTTPException(status_code=503, detail=why)
        title = html.escape(self.page.card.get("title") or "Image classifier")
        refresh = '<meta http-equiv="refresh" content="10">' if self.page.preparing else ""
        body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1">{refresh}<title>{title}</title></head>'
                f'<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; '
                f'padding: 0 1rem">'
                f'<h1 id="title">{title}</h1><p id="status">{html.escape(why)}</p>'
                f'<p><a href="../">Use the app instead</a>: it runs this model on the server.</p></body></html>')
        return HTMLResponse(body, status_code=503)

    def _allowed(self, path: str) -> bool:
        # ``path`` is already normalised by StaticFiles (no "..", no "."), so exact names suffice.
        folder, _, name = path.partition("/")
        if folder == "model":
            return name in self.page.model_files or (name == CARD_FILE and bool(self.page.card))
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


def static_routes(page: WebPage | None, sessions: SessionRegistry) -> list[BaseRoute]:
    """/web (unless ``page`` is None: the owner left the page out of the views), /exports and
    /v1/models, for the FastAPI app Gradio creates (``launch(app_kwargs={"routes": ...})``):
    routes that exist when the app is made answer from the server's first request. Mounted
    after ``launch`` instead, they answer 404 until then."""
    web = [Mount("/web", WebFiles(page), name="web")] if page is not None else []
    rest = serving_routes(serving_api(sessions.config))
    return [*web, Mount("/exports", ExportFiles(sessions), name="exports"), *rest]


def missing_endpoint_handlers() -> dict[type[Exception], Any]:
    """FastAPI exception handlers that answer a call to an API name the app does not have (a view
    the owner left out: ``/gradio_api/call/train`` on a demo) with 404, where Gradio raises
    ``FnIndexInferError`` and would answer 500 (a server error, for a client's mistake)."""
    async def not_found(request: Any, error: Exception) -> Response:
        return JSONResponse({"detail": "Not Found: this app has no such endpoint"}, status_code=404)

    return {FnIndexInferError: not_found}
