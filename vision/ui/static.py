"""Files served beside the UI: the client-side page at /web and live exports at /exports."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from vision.ui.session import SessionRegistry

log = logging.getLogger("vision.app")


def web_page_available(web_dir: Path) -> bool:
    """Whether TF.js is installed for web/ (``npm ci`` in web/)."""
    from vision.export import WEB_VENDOR

    return all((web_dir / "node_modules" / name).is_file() for name in WEB_VENDOR)


class WebFiles(StaticFiles):
    """Only the page, its libraries and the shipped model: not package.json, tests, ..."""

    def __init__(self, web_dir: Path) -> None:
        from vision.export import WEB_FILES, WEB_VENDOR

        super().__init__(directory=web_dir, html=True)
        self.allowed = set(WEB_FILES) | {f"node_modules/{name}" for name in WEB_VENDOR}

    async def get_response(self, path: str, scope: Any) -> Any:
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


def mount_static(app: Any, web_dir: Path, sessions: SessionRegistry) -> None:
    """Mount /web (when TF.js is installed) and /exports on the app's FastAPI server."""
    if web_page_available(web_dir):
        app.mount("/web", WebFiles(web_dir), name="web")
    else:
        log.warning("web/node_modules is missing (run `npm ci` in web/): the /web page is not served")
    app.mount("/exports", ExportFiles(sessions), name="exports")
