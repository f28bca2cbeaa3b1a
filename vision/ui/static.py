"""Files served beside the UI: the client-side page at /web and live exports at /exports."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from vision.ui.session import SessionRegistry
from vision.webpage import WebPage


class WebFiles(StaticFiles):
    """Only the page, its libraries and the shipped model: not package.json, tests, ...;
    "503, being prepared" while a fresh Space installs TF.js (``vision.webpage``)."""

    def __init__(self, page: WebPage) -> None:
        from vision.export import WEB_FILES, WEB_VENDOR

        super().__init__(directory=page.web_dir, html=True, check_dir=False)
        self.page = page
        self.allowed = set(WEB_FILES) | {f"node_modules/{name}" for name in WEB_VENDOR}

    async def get_response(self, path: str, scope: Any) -> Any:
        if not self.page.ready:
            raise HTTPException(status_code=503, detail=(
                "The in-browser page is being prepared (installing TF.js, exporting the model): reload in a "
                "minute." if self.page.preparing else f"The in-browser page is not available: {self.page.error}"))
        if path not in self.allowed and path not in (".", "") and not path.startswith("model/"):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


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


def mount_static(app: Any, page: WebPage, sessions: SessionRegistry) -> None:
    """Mount /web and /exports on the app's FastAPI server."""
    app.mount("/web", WebFiles(page), name="web")
    app.mount("/exports", ExportFiles(sessions), name="exports")
