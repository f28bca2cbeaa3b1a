"""Hub sync against a Hub-compatible server on loopback (tests/hub_server.py): round trips,
Keras-only loading, revisions, private repos, failures with what they leave behind, bounded
pulls, and messages that show a visitor no server folder and no server-side advice."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from vision.bundle.store import make_info, save_bundle
from vision.data.images import Preprocessing
from vision.errors import InvalidBundleError, LimitExceededError
from vision.hub import HubAuthError, HubConnectionError, HubError, HubNotFoundError, parse_ref, pull, push
from vision.runtime.inference import Classifier

from conftest import REPO, SHAPES_MODEL
from hub_server import HubServer

ALICE, BOB = "hf_alice_write_0123456789", "hf_bob_write_9876543210"
pytestmark = pytest.mark.slow


@pytest.fixture
def hub(monkeypatch):
    with HubServer({ALICE: ("alice", "write"), BOB: ("bob", "write")}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _probe() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]


def _predictions(folder: Path) -> np.ndarray:
    classifier = Classifier.from_path(folder)
    return np.stack([classifier.probabilities(image) for image in _probe()])


def test_parse_ref():
    assert parse_ref("hf://alice/shapes@v2") == ("alice/shapes", "v2")
    assert parse_ref("alice/shapes") == ("alice/shapes", None)
    for bad in ("alice", "hf://a/b/c", "hf://../x", "/etc/passwd"):
        with pytest.raises(HubError, match="not a Hub model id"):
            parse_ref(bad)


def test_push_pull_round_trip_with_a_valid_model_card(hub, tmp_path):
    url = push(SHAPES_MODEL, "alice/shapes", token=ALICE, exports=("tfjs",), commit_message="first")
    assert url.startswith(f"{hub.url}/alice/shapes/commit/")
    assert "POST /api/validate-yaml" in hub.state.log
    assert any(line.startswith("PUT /lfs-upload/") for line in hub.state.log)  # weights went through LFS
    folder = pull("alice/shapes", cache_dir=tmp_path / "cache")
    assert "tfjs/model.json" in hub.state.repos["alice/shapes"].resolve("main").files
    assert not (folder / "tfjs").exists()  # exports are for other consumers: a pull takes the bundle alone
    np.testing.assert_array_equal(_predictions(folder), _predictions(SHAPES_MODEL))
    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "keras" and meta["pipeline_tag"] == "image-classification"
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] >= 0.95


def test_keras_alone_loads_the_pushed_repo(hub, tmp_path):
    push(SHAPES_MODEL, "alice/shapes", token=ALICE, exports=("tfjs", "tflite"))
    script = (
        "import numpy as np, keras\n"
        "m = keras.saving.load_model('hf://alice/shapes')\n"
        "x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)\n"
        "np.save('out.npy', np.asarray(m(x)))\n"
    )
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    import keras

    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    expected = np.asarray(keras.saving.load_model(SHAPES_MODEL)(x))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_revisions_are_pinned_and_branches_kept_apart(hub, tmp_path, tiny_bundle):
    first = push(SHAPES_MODEL, "alice/m", token=ALICE).rsplit("/", 1)[1]
    push(tiny_bundle, "alice/m", token=ALICE, commit_message="second")
    push(tiny_bundle, "alice/m", token=ALICE, revision="experiment")
    latest = pull("alice/m", cache_dir=tmp_path / "c")
    pinned = pull(f"hf://alice/m@{first}", cache_dir=tmp_path / "c")
    branch = pull("alice/m", revision="experiment", cache_dir=tmp_path / "c")
    assert (pinned / "vision.json").read_text() == (SHAPES_MODEL / "vision.json").read_text()
    assert (latest / "vision.json").read_text() == (tiny_bundle / "vision.json").read_text()
    assert (branch / "vision.json").read_text() == (tiny_bundle / "vision.json").read_text()
    with pytest.raises(HubNotFoundError, match="revision 'v9' does not exist"):
        pull("alice/m@v9", cache_dir=tmp_path / "c")


def test_private_repos_need_the_owners_token(hub, tmp_path):
    push(SHAPES_MODEL, "alice/secret", token=ALICE, private=True)
    with pytest.raises(HubNotFoundError, match="not found, or it is private"):
        pull("alice/secret", cache_dir=tmp_path / "a")
    with pytest.raises(HubNotFoundError):
        pull("alice/secret", token=BOB, cache_dir=tmp_path / "b")
    assert (pull("alice/secret", token=ALICE, cache_dir=tmp_path / "c") / "vision.json").is_file()


def test_auth_failures_leave_the_local_bundle_untouched(hub, tmp_path):
    before = _digest(SHAPES_MODEL)
    with pytest.raises(HubAuthError, match="rejected the token \\(401\\)") as bad:
        push(SHAPES_MODEL, "alice/x", token="hf_not_a_real_token")
    assert "hf_not_a_real_token" not in str(bad.value)
    with pytest.raises(HubAuthError, match="no write access to 'alice/y' \\(403\\)"):
        push(SHAPES_MODEL, "alice/y", token=BOB)
    with pytest.raises(HubAuthError):
        push(SHAPES_MODEL, "alice/z")  # no token at all
    assert _digest(SHAPES_MODEL) == before
    assert hub.state.repos == {}


def test_a_500_during_the_commit_changes_nothing(hub):
    push(SHAPES_MODEL, "alice/m", token=ALICE)
    head = hub.state.repos["alice/m"].branches["main"]
    before = _digest(SHAPES_MODEL)
    hub.state.inject("POST", r"/commit/", status=500)
    with pytest.raises(HubError, match="answered 500"):
        push(SHAPES_MODEL, "alice/m", token=ALICE, commit_message="broken")
    assert hub.state.repos["alice/m"].branches["main"] == head
    assert _digest(SHAPES_MODEL) == before


def test_a_transient_500_on_an_lfs_upload_is_retried(hub):
    hub.state.inject("PUT", r"/lfs-upload/", status=500, times=1)
    push(SHAPES_MODEL, "alice/m", token=ALICE)
    assert hub.state.log.count("POST /api/models/alice/m/commit/main") == 1


def test_a_dropped_download_leaves_nothing_that_loads_later(hub, tmp_path):
    push(SHAPES_MODEL, "alice/m", token=ALICE)
    cache = tmp_path / "cache"
    hub.state.inject("GET", r"/resolve/[^/]+/model\.weights\.h5$", status=None, times=20)
    with pytest.raises(HubError):
        pull("alice/m", cache_dir=cache)
    for snapshot in cache.glob("models--alice--m/snapshots/*"):
        with pytest.raises(InvalidBundleError):
            from vision.bundle.store import load_bundle

            load_bundle(snapshot)
    hub.state.faults.clear()
    np.testing.assert_array_equal(_predictions(pull("alice/m", cache_dir=cache)), _predictions(SHAPES_MODEL))


def test_missing_repo_and_unreachable_hub(hub, tmp_path, monkeypatch):
    with pytest.raises(HubNotFoundError, match="'alice/nothing' was not found"):
        pull("alice/nothing", cache_dir=tmp_path / "c")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubConnectionError, match="cannot reach the Hub"):
        pull("alice/m", cache_dir=tmp_path / "c")
    with pytest.raises(HubConnectionError, match="cannot reach the Hub"):
        push(SHAPES_MODEL, "alice/m", token=ALICE)


def test_code_in_a_config_is_refused_and_removed_from_the_cache(hub, tmp_path):
    import keras
    from huggingface_hub import HfApi

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    folder = save_bundle(keras.Model(inputs, outputs), make_info("evil", ["a", "b"], "custom", Preprocessing((8, 8))),
                         tmp_path / "evil")
    api = HfApi(endpoint=hub.url, token=ALICE)
    api.create_repo("alice/evil")
    api.upload_folder(folder_path=str(folder), repo_id="alice/evil")
    cache = tmp_path / "cache"
    with pytest.raises(InvalidBundleError, match="(?i)lambda|safe"):
        pull("alice/evil", cache_dir=cache)
    assert not list(cache.glob("models--alice--evil/snapshots/*/config.json"))


def test_a_pulled_config_is_costed_before_keras_builds_it(hub, tmp_path):
    """A repo whose config.json is the 300-byte Dense(65536) bomb: refused from its figures, before
    Keras would allocate and initialise a gigabyte of weights."""
    from huggingface_hub import HfApi

    from hostile_models import dense_bomb_model_json

    folder = tmp_path / "bomb"
    shutil.copytree(SHAPES_MODEL, folder)
    (folder / "config.json").write_text(json.dumps(json.loads(dense_bomb_model_json())["modelTopology"]))
    api = HfApi(endpoint=hub.url, token=ALICE)
    api.create_repo("alice/bomb")
    api.upload_folder(folder_path=str(folder), repo_id="alice/bomb")
    with pytest.raises(InvalidBundleError, match="268,500,992 parameters is over"):
        pull("alice/bomb", cache_dir=tmp_path / "cache")


def test_cli_push_pull_and_offline_mode_never_print_the_token(hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": ALICE, "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(REPO)}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vision", *args], env={**env, **extra}, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    pushed = cli("push", str(SHAPES_MODEL), "alice/cli")
    assert pushed.returncode == 0, pushed.stderr[-1500:]
    pulled = cli("predict", str(REPO / "docs" / "examples" / "star.png"), "--model", "hf://alice/cli")
    assert pulled.returncode == 0 and "star" in pulled.stdout
    # A pulled vision.json's dataset source is never read as a path: the images must be given.
    optimized = cli("optimize", "hf://alice/cli", "--int8", "--out", "opt")
    assert optimized.returncode == 2 and "came from the Hub: pass its training images with --data" in optimized.stderr
    offline = cli("pull", "alice/never-cached", HF_HUB_OFFLINE="1")
    assert offline.returncode == 2 and "offline mode is on" in offline.stderr
    denied = cli("push", str(SHAPES_MODEL), "bob/cli")
    assert denied.returncode == 2 and "no write access" in denied.stderr
    for run in (pushed, pulled, offline, denied):
        assert ALICE not in run.stdout + run.stderr


def test_pull_through_olah_an_independent_hub_mirror(hub, tmp_path):
    """olah (a third-party Hub mirror) serves a git repository holding a pushed bundle;
    pull through it loads the same model."""
    import shutil

    from app_server import free_port, running

    push(SHAPES_MODEL, "alice/shapes", token=ALICE)
    pushed = pull("alice/shapes", cache_dir=tmp_path / "from-test-hub")
    mirror = tmp_path / "mirrors" / "models" / "alice" / "shapes"
    shutil.copytree(pushed, mirror, ignore=shutil.ignore_patterns(".gitattributes"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=mirror, check=True)
    subprocess.run([*git, "add", "-A"], cwd=mirror, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bundle"], cwd=mirror, check=True)

    port = free_port()
    config = tmp_path / "olah.toml"
    config.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nmirrors-path = ["{tmp_path / "mirrors"}"]\n'
                      f'repos-path = "{tmp_path / "olah-repos"}"\n\n[accessibility]\noffline = true\n')
    olah = [sys.executable, "-c", "from olah.server import cli; cli()", "-c", str(config)]
    with running(olah, f"http://127.0.0.1:{port}/api/models/alice/shapes", cwd=tmp_path):
        folder = pull("alice/shapes", cache_dir=tmp_path / "from-olah", endpoint=f"http://127.0.0.1:{port}")
    np.testing.assert_array_equal(_predictions(folder), _predictions(SHAPES_MODEL))


def test_model_repo_makes_the_app_start_on_a_hub_model(hub, monkeypatch):
    import app

    push(SHAPES_MODEL, "alice/space-model", token=ALICE)
    monkeypatch.setenv("MODEL_REPO", "alice/space-model")
    folder = app.start_model(None)
    assert "models--alice--space-model" in str(folder) and (folder / "vision.json").is_file()
    from vision.ui.config import AppConfig

    assert AppConfig.from_env(default_model=folder).default_model == folder


# -- bounded pulls --------------------------------------------------------------------------

SHAPES_BYTES = sum(p.stat().st_size for p in SHAPES_MODEL.iterdir() if p.is_file())


def _downloads(hub: HubServer) -> list[str]:
    """The file requests (HEAD and GET) in the server's log."""
    return [line for line in hub.state.log if "/resolve/" in line]


def _upload(hub: HubServer, repo_id: str, files: dict[str, bytes]) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.url, token=ALICE)
    api.create_repo(repo_id, exist_ok=True)
    api.create_commit(repo_id, [CommitOperationAdd(name, data) for name, data in files.items()],
                      commit_message="files")


def _bundle_bytes() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in SHAPES_MODEL.iterdir() if p.is_file()}


def _kept(cache: Path, repo_id: str) -> list[str]:
    """What a pull of ``repo_id`` left in ``cache``: its repo folder's files (huggingface_hub's
    empty lock files and its cache's CACHEDIR.TAG are not the repo's)."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    return sorted(p.relative_to(cache).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_a_pull_fetches_only_the_bundles_files(hub, tmp_path):
    _upload(hub, "alice/m", {**_bundle_bytes(), "extra.bin": os.urandom(3_000_000),
                             "tfjs/model.json": b"{}", "notes/big.txt": b"x" * 100_000})
    folder = pull("alice/m", cache_dir=tmp_path / "cache")  # no cap: only the choice of files keeps extra.bin out
    requested = " ".join(_downloads(hub))
    assert "model.weights.h5" in requested and "vision.json" in requested
    for other in ("extra.bin", "tfjs/", "notes/", ".gitattributes"):
        assert other not in requested
    assert sorted(p.name for p in folder.iterdir()) == sorted(_bundle_bytes())


def test_a_repo_bigger_than_the_cap_is_refused_before_any_download(hub, tmp_path):
    push(SHAPES_MODEL, "alice/m", token=ALICE)
    cache = tmp_path / "cache"
    with pytest.raises(LimitExceededError, match=r"'alice/m' needs 1\.8 MB .* than the 1\.8 MB this pull may take"):
        pull("alice/m", cache_dir=cache, max_bytes=SHAPES_BYTES - 1)
    assert _downloads(hub) == []
    assert _kept(cache, "alice/m") == []
    assert (pull("alice/m", cache_dir=cache, max_bytes=SHAPES_BYTES) / "vision.json").is_file()  # exactly fits


def test_a_repo_that_is_not_a_bundle_is_refused_before_any_download(hub, tmp_path):
    _upload(hub, "alice/notes", {"README.md": b"# notes", "config.json": b"{}", "data.bin": b"0" * 1000})
    with pytest.raises(InvalidBundleError) as refused:
        pull("alice/notes", cache_dir=tmp_path / "cache")
    assert str(refused.value) == "'alice/notes' is not a model bundle: it has no vision.json, model.weights.h5"
    assert _downloads(hub) == []


def test_a_server_that_sends_more_than_it_announced_is_stopped_at_the_cap(hub, tmp_path):
    push(SHAPES_MODEL, "alice/m", token=ALICE)
    hub.state.oversize["model.weights.h5"] = 200_000_000  # the listing and HEAD say 1.7 MB
    cache = tmp_path / "cache"
    with pytest.raises(LimitExceededError, match=r"went past 3\.0 MB, more than the Hub announced"):
        pull("alice/m", cache_dir=cache, max_bytes=3_000_000)
    # The client hung up at its first chunk past the cap (huggingface_hub reads 10 MB at a
    # time; the rest is socket buffers), not at the end of the 200 MB.
    assert hub.state.sent["model.weights.h5"] < 50_000_000
    assert _kept(cache, "alice/m") == []


def test_a_stopped_pull_leaves_an_earlier_pull_of_the_repo_as_it_was(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    push(SHAPES_MODEL, "alice/m", token=ALICE)
    cache = tmp_path / "cache"
    first = pull("alice/m", cache_dir=cache)
    before = _digest(cache)
    _upload(hub, "alice/m", {"vision.json": (SHAPES_MODEL / "vision.json").read_bytes() + b" " * 4_000_000})
    with pytest.raises(LimitExceededError):
        pull("alice/m", cache_dir=cache, max_bytes=3_000_000)
    assert _digest(cache) == before  # refs/main names the first commit again, and no new snapshot is left
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert pull("alice/m", cache_dir=cache) == first  # so offline, the earlier pull is still found


# -- what a visitor reads -------------------------------------------------------------------

_ABSOLUTE = re.compile(r"(^|[\s'\"(`])(/|[A-Za-z]:\\)\S")


def _shows_no_server_folder(message: str, tmp_path: Path) -> None:
    assert str(tmp_path) not in message and "models--" not in message and "snapshots" not in message
    assert not _ABSOLUTE.search(message), message


def test_messages_name_folders_by_their_name_and_hide_other_absolute_paths(tmp_path):
    from vision.hub import without_paths

    snapshot = tmp_path / "models--a--b" / "snapshots" / "abc"
    text = f"'{snapshot / 'vision.json'}' is bad; see /usr/lib/x.so (C:\\Users\\me\\x) or http://hub:9/a/b, 1/2"
    expected = "'a/b/vision.json' is bad; see <path> (<path>) or http://hub:9/a/b, 1/2"
    assert without_paths(text, {snapshot: "a/b"}) == expected


def test_a_pulled_non_bundle_is_named_by_repo_and_file_never_by_server_folder(hub, tmp_path):
    info = json.loads((SHAPES_MODEL / "vision.json").read_text())
    del info["labels"]
    _upload(hub, "alice/nolabels", {**_bundle_bytes(), "vision.json": json.dumps(info).encode()})
    _upload(hub, "alice/badweights", {**_bundle_bytes(), "model.weights.h5": b"not hdf5" * 1000})
    cache = tmp_path / "cache"
    with pytest.raises(InvalidBundleError) as no_labels:
        pull("alice/nolabels", cache_dir=cache)
    assert str(no_labels.value) == ("'alice/nolabels' is not a usable model bundle: "
                                    "'alice/nolabels/vision.json' lacks labels")
    with pytest.raises(InvalidBundleError) as bad_weights:
        pull("alice/badweights", cache_dir=cache)
    assert str(bad_weights.value).startswith("'alice/badweights' is not a usable model bundle: the Keras model in "
                                             "'alice/badweights' cannot be loaded")
    for message in (str(no_labels.value), str(bad_weights.value)):
        _shows_no_server_folder(message, tmp_path)


def _hub_view(tmp_path: Path, public: bool, **limits: int):
    from vision.ui.config import AppConfig, Limits
    from vision.ui.context import Context
    from vision.ui.hub import HubView

    config = AppConfig(default_model=SHAPES_MODEL, models_dir=tmp_path / "models", public=public,
                       state_dir=tmp_path / "state", limits=Limits(**limits))
    return HubView(Context.create(config))


def _view_pull(view, repo_id: str, token: str) -> str:
    import gradio as gr

    with pytest.raises(gr.Error) as refused:
        view.pull(repo_id, token, SimpleNamespace(session_hash="visitor"), None, progress=lambda *a, **k: None)
    return refused.value.message


def test_a_visitor_with_a_bad_token_is_told_to_check_it_never_about_hf_token(hub, tmp_path, monkeypatch):
    push(SHAPES_MODEL, "alice/m", token=ALICE)
    public = _view_pull(_hub_view(tmp_path / "public", public=True), "alice/m", "hf_typo_000")
    assert public == "the Hub rejected the token (401): check the token you entered"
    monkeypatch.setenv("HF_TOKEN", "hf_stale_server_token")  # the owner's own machine: the hint may name it
    private = _view_pull(_hub_view(tmp_path / "private", public=False), "alice/m", "")
    assert private.startswith("the Hub rejected the token (401): set HF_TOKEN")
    with pytest.raises(HubAuthError) as plain:
        pull("alice/m", token="hf_typo_000", cache_dir=tmp_path / "c")
    assert str(plain.value) == "the Hub rejected the token (401)"  # callers add the hint that fits their user


def test_a_visitors_pull_is_capped_at_what_is_left_of_the_session_quota(hub, tmp_path):
    push(SHAPES_MODEL, "alice/m", token=ALICE)
    message = _view_pull(_hub_view(tmp_path, public=True, session_disk_mb=1), "alice/m", "")
    assert message.startswith("'alice/m' needs 1.8 MB for its model files, more than the 1.0 MB")
    assert "this session's 1 MB" in message
    assert _downloads(hub) == []
    _shows_no_server_folder(message, tmp_path)
