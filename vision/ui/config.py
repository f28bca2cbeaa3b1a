"""Everything the app is told at start, read once from flags and the environment."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from vision.data.photos import example_photos
from vision.defaults import EVERYDAY_MODEL, MODELS_DIR, REPO
from vision.errors import VisionError
from vision.feedback_store import feedback_home
from vision.serve.limits import ServingLimits
from vision.ui.fairness import QueueShares
from vision.ui.upload_ceiling import UPLOAD_CAP_BYTES


@dataclass(frozen=True)
class Limits:
    """What one visitor's session may use. Stated in the README ("Sharing publicly")."""

    models_per_session: int = 3  # trained or pulled, kept until the session ends
    session_disk_mb: int = 400  # the session's models, samples and exports together
    files_per_call: int = 20  # images in one "Add to class"
    samples_per_session: int = 300  # webcam snapshots and uploads across all classes
    sample_max_side: int = 512  # samples are stored downscaled: training uses <= 224 px
    exports_per_session: int = 5
    session_idle_s: float = 2 * 3600  # a session unseen this long is removed with its files


#: The views an app can build, in tab order; "web" is the in-browser page (/web/ and a link to it).
VIEWS = ("classify", "live", "train", "models", "hub", "export", "optimize", "web")
#: ``--demo``: what a stakeholder needs, and nothing of the workbench.
DEMO_VIEWS = ("classify", "live", "web")


def parse_views(text: str | None) -> tuple[str, ...] | None:
    """``"classify,live,web"`` (or ``"demo"``) as a tuple of views; None for empty text (every view).

    Raises:
        VisionError: a name that is not a view.
    """
    names = [name.strip().lower() for name in (text or "").split(",") if name.strip()]
    if not names:
        return None
    if names == ["demo"]:
        return DEMO_VIEWS
    unknown = [name for name in names if name not in VIEWS]
    if unknown:
        raise VisionError(f"unknown view {unknown[0]!r}: choose from {', '.join(VIEWS)} (or demo)")
    return tuple(view for view in VIEWS if view in names)


@dataclass(frozen=True)
class AppConfig:
    """The app's settings. ``public`` turns on visitor roles (see ``vision.ui.access``)."""

    default_model: Path
    models_dir: Path
    public: bool = False
    owner: str | None = None  # Hub username of the owner (public mode)
    oauth: bool = False  # "Sign in with Hugging Face" is real (on a Space with hf_oauth)
    web_dir: Path = REPO / "web"
    examples: tuple[str, ...] = ()
    state_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vision-app-")))
    limits: Limits = Limits()
    shares: QueueShares = QueueShares()
    upload_cap_bytes: int = UPLOAD_CAP_BYTES  # Gradio's upload folder, all visitors together
    serving: ServingLimits = ServingLimits()
    max_file_size: str = "50mb"
    #: What visitors see in public mode (``parse_views``); None: every view, the workbench.
    views: tuple[str, ...] | None = None
    # Visitors' "wrong answer" reports (``vision.ui.feedback``); None: a temporary folder, lost on restart.
    feedback_dir: Path | None = None
    #: Serve classify and explain as MCP tools at /gradio_api/mcp/ (``--mcp``, VISION_MCP=1, on in ``--demo``).
    mcp: bool = False

    def shows(self, view: str) -> bool:
        """Whether the app builds ``view``. A view left out is not built at all (its API routes do
        not exist), so this holds for everyone: in public mode ``views`` applies; in private mode
        the one user is the owner, who sees everything (README: "Sharing your model")."""
        return self.views is None or not self.public or view in self.views

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, default_model: Path | None = None) -> "AppConfig":
        """Read ``VISION_*``, ``SPACE_ID`` and ``OAUTH_CLIENT_ID`` (see the README)."""
        env = os.environ if env is None else env
        on_space = bool(env.get("SPACE_ID"))
        public_flag = env.get("VISION_PUBLIC", "").strip().lower()
        public = on_space if public_flag == "" else public_flag not in ("0", "false", "no", "off")
        return cls(
            default_model=Path(default_model or env.get("VISION_MODEL") or EVERYDAY_MODEL),
            models_dir=Path(env.get("VISION_MODELS_DIR") or MODELS_DIR),
            public=public,
            owner=(env.get("VISION_OWNER") or "").strip() or None,
            # Gradio only does real OAuth on a Space; elsewhere it signs everyone in as the
            # server's own Hub account, which must never count as a visitor's identity.
            oauth=on_space and bool(env.get("OAUTH_CLIENT_ID")),
            examples=tuple(str(path) for path in example_photos()),
            views=parse_views(env.get("VISION_VIEWS")),
            feedback_dir=feedback_home(env),
            mcp=env.get("VISION_MCP", "").strip().lower() in ("1", "true", "yes", "on"),
        )
