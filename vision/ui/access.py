"""Who may do what, and with which Hub credentials.

Private mode (the default off Spaces): one user, the owner, with the server's Hub login.
Public mode (on a Space, or ``VISION_PUBLIC=1``): every visitor works in their own session
and uses their own credentials: the token they type, or the one "Sign in with Hugging Face"
gives them on a Space. The server's ``HF_TOKEN`` is never used on a visitor's behalf.
The owner is the Hub user named by ``VISION_OWNER``, recognised by a real OAuth sign-in or
by a token of theirs that the Hub confirms (``whoami``).
"""

from __future__ import annotations

from typing import Any

from vision.errors import AccessDeniedError, HubAuthError
from vision.hub import whoami
from vision.ui.config import AppConfig


def hub_token(config: AppConfig, typed: str | None, oauth_token: Any = None) -> str | bool | None:
    """The credential a Hub call may send for this caller.

    Returns the typed token, else a real sign-in's token; in public mode otherwise
    ``False`` (huggingface_hub then sends none: anonymous), and in private mode ``None``
    (the server's own login, which is the owner's).
    """
    typed = (typed or "").strip()
    if typed:
        return typed
    if oauth_token is not None and config.oauth:
        return oauth_token.token
    return False if config.public else None


def require_hub_credentials(config: AppConfig, typed: str | None, oauth_token: Any = None) -> str | None:
    """Like ``hub_token`` for writes: a public visitor without credentials is told how to get some."""
    token = hub_token(config, typed, oauth_token)
    if token is False:
        how = "sign in with Hugging Face or paste" if config.oauth else "paste"
        raise HubAuthError(f"to push, {how} a write token of your own: this public app never uses the "
                           "server's token for visitors")
    return token


def is_owner(config: AppConfig, typed: str | None = None, profile: Any = None) -> bool:
    """Whether this caller is the app's owner (always, in private mode)."""
    if not config.public:
        return True
    if config.owner is None:
        return False
    if config.oauth and profile is not None and getattr(profile, "username", None) == config.owner:
        return True
    typed = (typed or "").strip()
    if typed:
        return whoami(typed) == config.owner
    return False


def require_owner(config: AppConfig, typed: str | None = None, profile: Any = None, action: str = "do this") -> None:
    """Raise ``AccessDeniedError`` unless the caller is the owner."""
    if is_owner(config, typed, profile):
        return
    if config.owner is None:
        raise AccessDeniedError(f"only the owner can {action}, and this public app names no owner (VISION_OWNER)")
    how = "sign in with Hugging Face as them, or enter their token" if config.oauth else "enter their Hub token"
    raise AccessDeniedError(f"only the app's owner can {action}: {how}")
