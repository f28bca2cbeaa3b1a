"""Hugging Face Hub sync: push a bundle (one commit), pull one (cached, validated).

A pushed repo is the bundle folder as it is, so ``keras.saving.load_model("hf://user/repo")``
loads it with Keras alone; optional ``tfjs/`` and ``tflite/`` sub-folders carry exports.
Tokens come from the argument, ``HF_TOKEN`` or the huggingface_hub login store, and are
never printed or logged: error messages are written here, not copied from responses.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vision.bundle.store import load_bundle, read_info
from vision.errors import (  # noqa: F401  (the Hub errors are re-exported for callers of this module)
    HubAuthError,
    HubConnectionError,
    HubError,
    HubNotFoundError,
    InvalidBundleError,
    VisionError,
)

log = logging.getLogger(__name__)
SCHEME = "hf://"
EXPORT_FOLDERS = {"tfjs": "tfjs", "tflite": "tflite"}


def parse_ref(text: str) -> tuple[str, str | None]:
    """``hf://user/repo@rev`` or ``user/repo@rev`` -> (``user/repo``, ``rev`` or None)."""
    ref = text[len(SCHEME):] if text.startswith(SCHEME) else text
    repo_id, _, revision = ref.partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise HubError(f"{text!r} is not a Hub model id; expected user/repo or hf://user/repo[@revision]")
    return repo_id, revision or None


def is_hub_ref(text: str | os.PathLike) -> bool:
    return str(text).startswith(SCHEME)


def resolve_model(ref: str | os.PathLike, token: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """A local bundle folder for ``ref``: a path as it is, or ``hf://user/repo[@rev]`` pulled."""
    if is_hub_ref(ref):
        repo_id, revision = parse_ref(str(ref))
        return pull(repo_id, revision=revision, token=token, cache_dir=cache_dir)
    return Path(ref)


def push(bundle_path: str | Path, repo_id: str, token: str | None = None, private: bool = False,
         revision: str | None = None, commit_message: str | None = None,
         exports: tuple[str, ...] = (), endpoint: str | None = None) -> str:
    """Upload the bundle at ``bundle_path`` to ``repo_id`` in one commit; return its URL.

    Creates the repo (``private`` if asked) and the branch ``revision`` when missing.
    ``exports`` adds ``"tfjs"`` and/or ``"tflite"`` sub-folders. The local bundle is only
    read: a failed push changes nothing on disk.

    Raises:
        HubAuthError, HubNotFoundError, HubConnectionError, HubError: from the Hub.
        InvalidBundleError: the bundle is not valid.
    """
    from huggingface_hub import HfApi

    from vision.export.formats import export  # lazy: imports TensorFlow, which pull and resolve do not need

    repo_id, ref_revision = parse_ref(repo_id)
    revision = revision or ref_revision
    unknown = set(exports) - set(EXPORT_FOLDERS)
    if unknown:
        raise HubError(f"unknown export {sorted(unknown)[0]!r}; choose from {', '.join(EXPORT_FOLDERS)}")
    bundle = load_bundle(bundle_path)
    api = HfApi(endpoint=endpoint or _endpoint(), token=token)
    with tempfile.TemporaryDirectory(prefix="vision-push-") as tmp:
        staging = Path(tmp) / "repo"
        shutil.copytree(bundle.path, staging)
        for fmt in exports:
            export(bundle, fmt, staging / EXPORT_FOLDERS[fmt])
        with _hub_errors(repo_id, revision, api.endpoint):
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(
                folder_path=str(staging), repo_id=repo_id, revision=revision,
                commit_message=commit_message or f"Upload {bundle.name} ({bundle.info.get('architecture')})",
            )
    log.info("pushed %s to %s", bundle.path, info.commit_url)
    return info.commit_url


def pull(repo_id: str, revision: str | None = None, token: str | None = None,
         cache_dir: str | Path | None = None, endpoint: str | None = None) -> Path:
    """Download ``repo_id`` at ``revision`` into the Hugging Face cache and validate it.

    A pinned revision (branch, tag or commit) gives exactly that revision. Returns the
    snapshot folder, a bundle that ``vision.bundle.store.load_bundle`` loads (safe mode: a config
    that carries code, such as a Lambda layer, is refused).

    Raises:
        HubAuthError, HubNotFoundError, HubConnectionError, HubError: from the Hub.
        InvalidBundleError: the repo is not a valid bundle; its snapshot is removed from
            the cache so nothing half-downloaded is ever loaded later.
    """
    from huggingface_hub import snapshot_download

    repo_id, ref_revision = parse_ref(repo_id)
    revision = revision or ref_revision
    url = endpoint or _endpoint()
    with _hub_errors(repo_id, revision, url):
        folder = Path(snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache_dir,
                                        endpoint=url))
    try:
        read_info(folder)
        load_bundle(folder)
    except VisionError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise InvalidBundleError(f"'{repo_id}' is not a usable model bundle: {error}") from None
    return folder


def whoami(token: str, endpoint: str | None = None) -> str:
    """The Hub username that ``token`` belongs to (the token is sent, never shown).

    Raises:
        HubAuthError: the Hub rejected the token. HubConnectionError: unreachable.
    """
    from huggingface_hub import HfApi

    url = endpoint or _endpoint()
    with _hub_errors("whoami", None, url):
        return str(HfApi(endpoint=url).whoami(token=token)["name"])


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


@contextmanager
def _hub_errors(repo_id: str, revision: str | None, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into HubErrors with a clear message."""
    import httpx2  # huggingface_hub 2.x's HTTP client
    from huggingface_hub import errors

    where = f"'{repo_id}'" + (f" at revision '{revision}'" if revision else "")
    try:
        yield
    except errors.RevisionNotFoundError:
        raise HubNotFoundError(f"revision '{revision}' does not exist in {repo_id!r}") from None
    except errors.RepositoryNotFoundError:
        raise HubNotFoundError(
            f"repository {repo_id!r} was not found, or it is private and the token cannot read it") from None
    except errors.OfflineModeIsEnabled:
        raise HubConnectionError(f"offline mode is on (HF_HUB_OFFLINE) and {where} is not in the cache") from None
    except errors.LocalEntryNotFoundError:  # before its parent EntryNotFoundError
        if _offline():
            raise HubConnectionError(
                f"offline mode is on (HF_HUB_OFFLINE) and {where} is not in the cache") from None
        raise HubConnectionError(
            f"cannot reach the Hub at {endpoint} and {where} is not in the cache; check the network") from None
    except errors.EntryNotFoundError:
        raise HubNotFoundError(f"a file of {where} is missing on the Hub") from None
    except errors.HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise HubAuthError("the Hub rejected the token (401): set HF_TOKEN or run `hf auth login` "
                               "with a valid token") from None
        if status == 403:
            raise HubAuthError(f"the token has no write access to {repo_id!r} (403): use a write token "
                               "for that namespace") from None
        raise HubError(f"the Hub answered {status} for {where}; nothing changed locally, try again") from None
    except errors.IncompleteSnapshotError:
        raise HubConnectionError(f"the download of {where} was interrupted; try again") from None
    except httpx2.TimeoutException as error:
        raise HubConnectionError(f"the Hub at {endpoint} timed out ({type(error).__name__})") from None
    except (httpx2.TransportError, ConnectionError) as error:
        raise HubConnectionError(f"cannot reach the Hub at {endpoint} ({type(error).__name__})") from None
