"""Hugging Face Hub sync: push a bundle (one commit), pull one (bounded, cached, validated).

A pushed repo is the bundle folder as it is, so ``keras.saving.load_model("hf://user/repo")``
loads it with Keras alone; optional ``tfjs/`` and ``tflite/`` sub-folders carry exports.
A pull looks the repo up first and downloads only a bundle's own files, within a byte cap.
Tokens come from the argument, ``HF_TOKEN`` or the huggingface_hub login store, and are
never printed or logged: error messages are written here, not copied from responses.
Messages name files by their place in the repo or bundle, never by a folder on this
machine (the app shows them to visitors); the full text goes to the log.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from vision import redact
from vision.bundle.examples import EXAMPLES_FOLDER, MAX_EXAMPLE_FILES, is_example_name
from vision.bundle.store import (
    CONFUSION_FILE,
    CURVES_FILE,
    INFO_FILE,
    KERAS_FILES,
    RELIABILITY_FILE,
    is_tflite_only,
    load_bundle,
    read_info,
)
from vision.bundle.teachable import parse_json
from vision.errors import (  # noqa: F401  (the Hub errors are re-exported for callers of this module)
    HubAuthError,
    HubConnectionError,
    HubError,
    HubNotFoundError,
    InvalidBundleError,
    LimitExceededError,
    TokenRejectedError,
    VisionError,
)
from vision.models.layers_config import check_cost
from vision.trust.ood import OOD_FILE

log = logging.getLogger(__name__)
SCHEME = "hf://"
EXPORT_FOLDERS = {"tfjs": "tfjs", "tflite": "tflite"}
#: What a pull downloads: a bundle's files as ``save_bundle`` and Keras's folder format write
#: them. Anything else in the repo (exports, other files) stays on the Hub.
REQUIRED_FILES = (INFO_FILE, *KERAS_FILES)
OPTIONAL_FILES = ("metadata.json", "README.md", OOD_FILE, CURVES_FILE, CONFUSION_FILE, RELIABILITY_FILE)
ASSETS_FOLDER = "assets"  # Keras's per-layer assets; none of this package's models write any
MAX_ASSET_FILES = 100  # each file is two requests: a repo of thousands would keep the server busy




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


def resolve_model(ref: str | os.PathLike, token: str | None = None, cache_dir: str | Path | None = None,
                  max_bytes: int | None = None) -> Path:
    """A local bundle folder for ``ref``: a path as it is, or ``hf://user/repo[@rev]`` pulled
    (at most ``max_bytes`` downloaded, see ``pull``)."""
    if is_hub_ref(ref):
        repo_id, revision = parse_ref(str(ref))
        return pull(repo_id, revision=revision, token=token, cache_dir=cache_dir, max_bytes=max_bytes)
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
        InvalidBundleError: the bundle is not valid (named by its folder's name, not its path).
    """
    from huggingface_hub import HfApi  # lazy: slow to import; the CLI imports this module

    from vision.export.formats import export  # lazy: imports TensorFlow, which pull and resolve do not need

    repo_id, ref_revision = parse_ref(repo_id)
    revision = revision or ref_revision
    unknown = set(exports) - set(EXPORT_FOLDERS)
    if unknown:
        raise HubError(f"unknown export {sorted(unknown)[0]!r}; choose from {', '.join(EXPORT_FOLDERS)}")
    bundle_path = Path(bundle_path)
    api = HfApi(endpoint=endpoint or _endpoint(), token=token)
    with tempfile.TemporaryDirectory(prefix="vision-push-") as tmp:
        staging = Path(tmp) / "repo"
        with named_paths({bundle_path: bundle_path.resolve().name, staging: repo_id}):
            bundle = load_bundle(bundle_path)
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


def pull(repo_id: str, revision: str | None = None, token: str | bool | None = None,
         cache_dir: str | Path | None = None, endpoint: str | None = None, max_bytes: int | None = None) -> Path:
    """Download the bundle in ``repo_id`` at ``revision`` into the Hugging Face cache and validate it.

    The repo is looked up first: one that is not a bundle, or whose bundle files not yet
    cached add up to more than ``max_bytes`` (None: no cap), is refused before any download.
    Only the bundle's files are fetched (``REQUIRED_FILES``, ``OPTIONAL_FILES``, ``assets/``),
    all from the one commit that ``revision`` names when looked up, and the bytes are counted
    as they arrive: a server that sends more than it announced is stopped at ``max_bytes``.
    When the Hub is out of reach (offline mode, no network), a bundle pulled before is served
    from the cache. Returns the snapshot folder, a bundle that ``vision.bundle.store.load_bundle``
    loads (safe mode: a config that carries code, such as a Lambda layer, is refused).

    Whatever fails, what this pull added to the cache is removed, so nothing refused or
    half-downloaded is ever loaded later.

    Raises:
        HubAuthError (TokenRejectedError for a 401), HubNotFoundError, HubConnectionError,
            HubError: from the Hub.
        LimitExceededError: the bundle is bigger than ``max_bytes``, or its download went past it.
        InvalidBundleError: the repo is not a valid bundle (files named as in the repo).
    """
    from huggingface_hub import HfApi  # lazy: slow to import; the CLI imports this module

    repo_id, ref_revision = parse_ref(repo_id)
    revision = revision or ref_revision
    url = endpoint or _endpoint()
    storage = _storage_folder(repo_id, cache_dir)
    with _hub_errors(repo_id, revision, url), _undone_on_failure(storage):
        folder = _fetch(HfApi(endpoint=url, token=token), repo_id, revision, cache_dir, max_bytes)
        _validate(folder, repo_id)
    return folder


def whoami(token: str, endpoint: str | None = None) -> str:
    """The Hub username that ``token`` belongs to (the token is sent, never shown).

    Raises:
        TokenRejectedError: the Hub rejected the token. HubConnectionError: unreachable.
    """
    from huggingface_hub import HfApi  # lazy: slow to import; the CLI imports this module

    url = endpoint or _endpoint()
    with _hub_errors("whoami", None, url):
        return str(HfApi(endpoint=url).whoami(token=token)["name"])


@contextmanager
def named_paths(names: Mapping[Path, str]) -> Iterator[None]:
    """Re-raise a ``VisionError`` with each folder in ``names`` written as its name there, and
    any other absolute path hidden: what a visitor reads never shows where this machine keeps
    files. The full message is logged."""
    try:
        yield
    except VisionError as error:
        log.warning("%s", error)
        raise type(error)(without_paths(str(error), names)) from None


def without_paths(text: str, names: Mapping[Path, str]) -> str:
    """``text`` with each folder of ``names`` replaced by its name, and any other absolute path
    by ``<path>`` (``vision.redact``)."""
    return redact.without_paths(text, names, unknown="<path>")


def _fetch(api: Any, repo_id: str, revision: str | None, cache_dir: str | Path | None,
           max_bytes: int | None) -> Path:
    """The snapshot folder of the bundle: looked up, checked, then downloaded within ``max_bytes``."""
    import httpx2  # lazy: huggingface_hub 2.x's HTTP client, as slow to import
    from huggingface_hub import constants, errors  # lazy: slow to import; the CLI imports this module

    try:
        # resolve_revision records branch -> commit in the cache's refs, so an offline pull finds
        # it later. The branch is named even when it is the default: a revision-less repo URL is
        # not served by every Hub mirror (olah answers it 401).
        commit = api.resolve_revision(repo_id, revision=revision or constants.DEFAULT_REVISION,
                                      cache_dir=cache_dir)
        listing = _listing(api, repo_id, commit.resolved)
    except (httpx2.TransportError, errors.OfflineModeIsEnabled, errors.RevisionResolutionError):
        # Out of reach: nothing will be downloaded, so nothing needs a bound; raises when not cached.
        return _cached(repo_id, revision, cache_dir)
    where = _where(repo_id, revision)
    files = _bundle_files(where, listing)
    snapshot = _storage_folder(repo_id, cache_dir) / "snapshots" / commit.resolved
    new = {name: size for name, size in files.items() if not (snapshot / name).is_file()}
    budget = _Budget(max_bytes, where)
    budget.expect(sum(new.values()))
    _download(api, repo_id, commit, files, cache_dir, budget)
    budget.check_on_disk(sum((snapshot / name).stat().st_size for name in new))
    return snapshot


def _listing(api: Any, repo_id: str, commit: str) -> dict[str, int]:
    """Size of every file a bundle could use at ``commit``: the root, and ``assets/`` if any."""
    from huggingface_hub.hf_api import RepoFile, RepoFolder  # lazy: slow to import; the CLI imports this module

    root = list(api.list_repo_tree(repo_id, revision=commit))
    sizes = {entry.path: entry.size for entry in root if isinstance(entry, RepoFile)}
    if any(isinstance(entry, RepoFolder) and entry.path == EXAMPLES_FOLDER for entry in root):
        # The model's example photos (``vision.bundle.examples``): counted, and within the byte cap.
        examples = list(islice(api.list_repo_tree(repo_id, path_in_repo=EXAMPLES_FOLDER, revision=commit),
                               MAX_EXAMPLE_FILES + 1))
        if len(examples) > MAX_EXAMPLE_FILES:
            raise InvalidBundleError(f"'{repo_id}' has more than {MAX_EXAMPLE_FILES} entries in {EXAMPLES_FOLDER}/")
        sizes |= {entry.path: entry.size for entry in examples if isinstance(entry, RepoFile)}
    if any(isinstance(entry, RepoFolder) and entry.path == ASSETS_FOLDER for entry in root):
        assets = api.list_repo_tree(repo_id, path_in_repo=ASSETS_FOLDER, revision=commit, recursive=True)
        entries = list(islice(assets, MAX_ASSET_FILES + 1))
        if len(entries) > MAX_ASSET_FILES:
            raise InvalidBundleError(f"'{repo_id}' has more than {MAX_ASSET_FILES} entries in {ASSETS_FOLDER}/; "
                                     "a model bundle has far fewer")
        sizes |= {entry.path: entry.size for entry in entries if isinstance(entry, RepoFile)}
    return sizes


def _bundle_files(where: str, listing: Mapping[str, int]) -> dict[str, int]:
    """The files of ``listing`` that a bundle is made of, with their sizes.

    Raises:
        InvalidBundleError: a file every bundle has is missing (named as in the repo).
    """
    missing = [name for name in REQUIRED_FILES if name not in listing]
    if missing:
        raise InvalidBundleError(f"{where} is not a model bundle: it has no {', '.join(missing)}")
    return {name: size for name, size in listing.items() if name in REQUIRED_FILES + OPTIONAL_FILES
            or _is_asset(name) or is_example_name(name)}


def _is_asset(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == ASSETS_FOLDER and len(parts) > 1 and "\\" not in name and not {"", ".", ".."} & set(parts)


def _download(api: Any, repo_id: str, commit: Any, files: Mapping[str, int], cache_dir: str | Path | None,
              budget: "_Budget") -> None:
    """Each of ``files`` into the cache at ``commit``, one at a time, through ``budget``'s meter."""
    from huggingface_hub import hf_hub_download  # lazy: slow to import; the CLI imports this module

    for name in files:
        hf_hub_download(repo_id, name, revision=commit, cache_dir=cache_dir, endpoint=api.endpoint,
                        token=api.token, tqdm_class=budget.meter)


def _cached(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download  # lazy: slow to import; the CLI imports this module

    patterns = [*REQUIRED_FILES, *OPTIONAL_FILES, f"{ASSETS_FOLDER}/*", f"{EXAMPLES_FOLDER}/*.jpg"]
    return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True,
                                  allow_patterns=patterns))


def _validate(folder: Path, repo_id: str) -> None:
    """Raise ``InvalidBundleError`` (files named as in the repo) unless ``folder`` loads as a bundle;
    an invalid snapshot is removed even when an earlier pull left it."""
    try:
        with named_paths({folder: repo_id}):
            info = read_info(folder)
            if not is_tflite_only(info):
                _costed(folder)
            load_bundle(folder)
    except VisionError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise InvalidBundleError(f"'{repo_id}' is not a usable model bundle: {error}") from None


def _costed(folder: Path) -> None:
    """A pulled model's ``config.json`` is somebody else's file: its parameters, weight bytes and
    activation values are counted from the config alone (``check_cost``) before Keras builds
    anything, whose every weight it would allocate first."""
    config = folder / KERAS_FILES[0]
    check_cost(parse_json(config.read_text(encoding="utf-8", errors="replace"), config.name), config.name)


class _Budget:
    """The bytes one pull may still write, checked against what the Hub announced and again
    against what arrives.

    huggingface_hub hands every downloaded chunk to its progress bar before writing it, so a
    chunk refused in ``meter.update`` never reaches the disk: a server that sends more than it
    announced is stopped with at most ``limit`` bytes written. (A Xet download reports after
    writing; ``check_on_disk`` catches that case once the file is complete.)
    """

    def __init__(self, limit: int | None, where: str) -> None:
        self.limit, self.where, self.used = limit, where, 0
        self.meter = self._meter_class()

    def expect(self, total: int | None) -> None:
        """Refuse, before a byte arrives, a download announced bigger than what is left."""
        if self.limit is not None and total is not None and self.used + total > self.limit:
            raise LimitExceededError(f"{self.where} needs {_mb(self.used + total)} MB for its model files, "
                                     f"more than the {_mb(self.limit)} MB this pull may take")

    def take(self, count: int) -> None:
        """Count ``count`` bytes about to be written; refuse them past the limit."""
        self.used += count
        self.check_on_disk(self.used)

    def check_on_disk(self, written: int) -> None:
        """Refuse a download that wrote more than the limit."""
        if self.limit is not None and written > self.limit:
            raise LimitExceededError(f"the download of {self.where} went past {_mb(self.limit)} MB, more than "
                                     "the Hub announced for its files; it was stopped and nothing was kept")

    def _meter_class(self) -> type:
        from huggingface_hub.utils import tqdm as hf_tqdm  # lazy: slow to import; the CLI imports this module

        budget = self

        class Meter(hf_tqdm):
            """A progress bar that spends ``budget`` (files download one at a time: no lock)."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                # Xet downloads open a second bar per file for network bytes; only the bar of
                # bytes written to disk counts, or every byte would count twice.
                self._counts = not str(kwargs.get("name") or "").endswith(".transfer")
                if self._counts:
                    budget.expect(kwargs.get("total"))
                    budget.take(int(kwargs.get("initial") or 0))  # resumed from an earlier partial file
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                if self._counts:
                    budget.take(int(n or 0))
                return super().update(n)

        return Meter


@contextmanager
def _undone_on_failure(storage: Path) -> Iterator[None]:
    """On any failure, remove what was added under ``storage`` (one repo's folder in the cache)
    and put its refs back: a refused or broken pull leaves nothing behind."""
    before = _cache_state(storage)
    try:
        yield
    except BaseException:
        _restore(storage, before)
        raise


def _cache_state(storage: Path) -> dict[Path, bytes | None]:
    """Every path under ``storage``, with the content of the small ``refs`` files."""
    refs = storage / "refs"
    return {path: path.read_bytes() if path.is_file() and refs in path.parents else None
            for path in storage.rglob("*")} if storage.is_dir() else {}


def _restore(storage: Path, before: Mapping[Path, bytes | None]) -> None:
    if not before:
        shutil.rmtree(storage, ignore_errors=True)
        return
    for path in sorted(storage.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # contents before folders
        if path not in before:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        elif before[path] is not None and path.read_bytes() != before[path]:
            path.write_bytes(before[path])


def _storage_folder(repo_id: str, cache_dir: str | Path | None) -> Path:
    """The repo's folder in the Hugging Face cache, as huggingface_hub names it."""
    from huggingface_hub import constants  # lazy: slow to import; the CLI imports this module
    from huggingface_hub.file_download import repo_folder_name  # lazy: slow to import; the CLI imports this module

    root = Path(cache_dir or constants.HF_HUB_CACHE).expanduser().resolve()
    return root / repo_folder_name(repo_id=repo_id, repo_type="model")


def _where(repo_id: str, revision: str | None) -> str:
    return f"'{repo_id}'" + (f" at revision '{revision}'" if revision else "")


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f}"


def _offline() -> bool:
    from huggingface_hub import constants  # lazy: slow to import; the CLI imports this module

    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants  # lazy: slow to import; the CLI imports this module

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


@contextmanager
def _hub_errors(repo_id: str, revision: str | None, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into HubErrors with a clear message."""
    import httpx2  # lazy: huggingface_hub 2.x's HTTP client, as slow to import
    from huggingface_hub import errors  # lazy: slow to import; the CLI imports this module

    where = _where(repo_id, revision)
    try:
        yield
    except errors.RevisionNotFoundError:
        raise HubNotFoundError(f"revision '{revision}' does not exist in {repo_id!r}") from None
    except errors.RepositoryNotFoundError:
        raise HubNotFoundError(
            f"repository {repo_id!r} was not found, or it is private and the token cannot read it") from None
    except errors.OfflineModeIsEnabled:
        raise HubConnectionError(f"offline mode is on (HF_HUB_OFFLINE) and {where} is not in the cache") from None
    except errors.IncompleteSnapshotError:  # before its parent LocalEntryNotFoundError
        raise HubConnectionError(f"the cached copy of {where} is incomplete and the Hub is out of reach; "
                                 "try again online") from None
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
            raise TokenRejectedError("the Hub rejected the token (401)") from None
        if status == 403:
            raise HubAuthError(f"the token has no write access to {repo_id!r} (403): use a write token "
                               "for that namespace") from None
        raise HubError(f"the Hub answered {status} for {where}; nothing changed locally, try again") from None
    except httpx2.TimeoutException as error:
        raise HubConnectionError(f"the Hub at {endpoint} timed out ({type(error).__name__})") from None
    except (httpx2.TransportError, ConnectionError) as error:
        raise HubConnectionError(f"cannot reach the Hub at {endpoint} ({type(error).__name__})") from None
