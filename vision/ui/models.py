"""The Models view: the models this session can see, its active one, and the owner's
publish and delete."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr
from PIL import Image

from vision.bundle.store import (
    CONFUSION_FILE,
    CURVES_FILE,
    RELIABILITY_FILE,
    copy_bundle,
    delete_bundle,
    describe_bundle,
)
from vision.bundle.teachable import MAX_ZIP_BYTES
from vision.data.datasets import load_zip
from vision.errors import AccessDeniedError, BundleExistsError, DatasetError, InvalidModelFileError, LimitExceededError
from vision.training.evaluate import COMPARE_COLUMNS, compare_classifiers
from vision.ui import access
from vision.ui.cache import forget, get_bundle, get_classifier
from vision.ui.catalog import MINE, SHARED
from vision.ui.context import Context
from vision.ui.errors import user_errors
from vision.ui.session import DEFAULT_KEY
from vision.ui.train import MODEL_NAME, TrainView
from vision.ui.wiring import EXPORT, QUICK

HEADERS = ["key", "name", "architecture", "classes", "val accuracy", "created"]
#: Models evaluated side by side at most, in one call.
MAX_COMPARED = 4
#: Images a visitor's comparison may classify (each model classifies each once).
MAX_COMPARE_IMAGES = 500


def _name_from_file(path: str) -> str:
    """A model name from an uploaded file's name: its letters, digits, '-' and '_'."""
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(path).stem).strip("-_")[:64]
    return stem if MODEL_NAME.match(stem or "") else "teachable-machine"


class ModelsView:
    def __init__(self, ctx: Context, train: TrainView | None = None) -> None:
        self.ctx = ctx
        # Where a new model goes and the per-session limits: the same rules as for training.
        self._train = train or TrainView(ctx)

    @user_errors
    def import_teachable(self, zip_file: str | None, name: str, request: gr.Request,
                         progress: gr.Progress = gr.Progress()) -> tuple[list[list[Any]], Any, str]:
        """Import the zip Teachable Machine gave the visitor (TF.js, Keras or TFLite) as a model
        of this session (or, privately, a shared one), and make it the active one."""
        from vision.bundle.teachable import import_teachable  # lazy: Keras

        if not zip_file:
            raise InvalidModelFileError("upload the zip Teachable Machine gave you (any of its three exports)")
        session = self.ctx.session(request)
        name = (name or "").strip() or _name_from_file(zip_file)
        key, out = self._train.destination(session, name)
        config = self.ctx.config
        quota = session.remaining_bytes(config.limits.session_disk_mb) if config.public else MAX_ZIP_BYTES
        progress(0.1, desc="Reading the Teachable Machine export")
        folder = import_teachable(zip_file, out, name=name, max_bytes=quota)
        if key.startswith(MINE):
            session.models[key] = folder
        progress(0.8, desc="Loading it")
        get_classifier(folder)
        session.active = key
        bundle = get_bundle(folder)
        dropdown, table = self.refresh(request)
        extra = (" It came as TFLite only: it classifies, evaluates and exports to TFLite; for Grad-CAM and "
                 "training further, import its Keras or TF.js export.") if bundle.tflite_only else \
            " Grad-CAM, exports and the Hub work on it; train it further in the Train tab."
        return table, dropdown, (f"Imported **{bundle.name}** (`{key}`, Teachable Machine's "
                                 f"{bundle.info['source']['export']} export, classes: {', '.join(bundle.labels)}) "
                                 f"and made it this session's model.{extra}")

    @user_errors
    def compare(self, keys: list[str] | None, zip_file: str | None, request: gr.Request,
                progress: gr.Progress = gr.Progress(track_tqdm=False)) -> list[list[Any]]:
        """Evaluate the chosen models side by side on one labelled zip (class folders)."""
        session = self.ctx.session(request)
        keys = list(dict.fromkeys(keys or []))
        if not 1 <= len(keys) <= MAX_COMPARED:
            raise DatasetError(f"choose 1 to {MAX_COMPARED} models to compare")
        if not zip_file:
            raise DatasetError("upload a zip of class folders to compare the models on")
        folders = {key: self.ctx.catalog.resolve(session, key) for key in keys}
        config = self.ctx.config
        with tempfile.TemporaryDirectory(dir=config.state_dir, prefix="vision-compare-") as scratch:
            quota = session.remaining_bytes(config.limits.session_disk_mb) if config.public else None
            dataset = load_zip(zip_file, extract_to=Path(scratch) / "data", max_total_bytes=quota)
            split = dataset.everything()
            if config.public and len(split) > MAX_COMPARE_IMAGES:
                raise LimitExceededError(f"compare on at most {MAX_COMPARE_IMAGES} images")
            classifiers = {get_bundle(folder).name: get_classifier(folder) for folder in folders.values()}
            return compare_classifiers(classifiers, split, dataset.class_names,
                                       progress=lambda items: progress.tqdm(items, desc="Classifying"))

    def table(self, request: gr.Request) -> list[list[Any]]:
        return self.ctx.catalog.rows(self.ctx.session(request))

    def names(self, request: gr.Request) -> list[str]:
        """The keys of the models this session can use (for gradio_client)."""
        return list(self.ctx.catalog.visible(self.ctx.session(request)))

    def compare_choices(self, request: gr.Request) -> Any:
        """The compare picker's choices: the models this session can use."""
        return gr.Dropdown(choices=self.ctx.catalog.choices(self.ctx.session(request)))

    def refresh(self, request: gr.Request) -> tuple[Any, list[list[Any]]]:
        """The dropdown (on the active model) and the table, for this session."""
        session = self.ctx.session(request)
        self.ctx.catalog.active(session)
        return gr.Dropdown(choices=self.ctx.catalog.choices(session), value=session.active), self.table(request)

    @user_errors
    def show(self, key: str, request: gr.Request) -> tuple[str, Any, Any, Any]:
        """The model card and plots of ``key`` (only a model this session can see)."""
        folder = self.ctx.catalog.resolve(self.ctx.session(request), key)
        card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
        card = card.split("---", 2)[2] if card.startswith("---") else card  # hide the YAML header
        pictures = [folder / name for name in (CURVES_FILE, CONFUSION_FILE, RELIABILITY_FILE)]
        curves, confusion, reliability = (Image.open(p).convert("RGB") if p.is_file() else None for p in pictures)
        return f"**{get_bundle(folder).name}** (`{key}`)\n\n{card}", curves, confusion, reliability

    @user_errors
    def describe(self, key: str, title: str, description: str, author: str, owner_token: str,
                 request: gr.Request, profile: gr.OAuthProfile | None) -> tuple[str, Any, Any, Any]:
        """Set what visitors see of ``key`` (title, one-line description, author): a session's own
        model by that session, any other (in public mode) by the owner only."""
        session = self.ctx.session(request)
        folder = self.ctx.catalog.resolve(session, key)
        if not key.startswith(MINE):
            access.require_owner(self.ctx.config, owner_token, profile, "describe shared models")
        describe_bundle(folder, title=title or "", description=description or "", author=author or "")
        forget(folder)  # the cached bundle holds the old vision.json
        return self.show(key, request)

    @user_errors
    def use(self, key: str, request: gr.Request) -> str:
        session = self.ctx.session(request)
        folder = self.ctx.catalog.resolve(session, key)
        get_classifier(folder)  # load (and cache) now, so the first prediction is fast
        session.active = key
        return f"Using **{get_bundle(folder).name}** in this browser session."

    @user_errors
    def delete(self, key: str, owner_token: str, request: gr.Request,
               profile: gr.OAuthProfile | None) -> tuple[list[list[Any]], Any, str]:
        """Delete one of this session's models, or (owner only) a shared one not in use."""
        session = self.ctx.session(request)
        folder = self.ctx.catalog.resolve(session, key)
        if key == DEFAULT_KEY:
            raise AccessDeniedError("the default model cannot be deleted")
        if key.startswith(SHARED):
            access.require_owner(self.ctx.config, owner_token, profile, "delete shared models")
            users = self.ctx.sessions.users_of(key, besides=session)
            if users:
                raise AccessDeniedError(f"'{key}' is in use by {users} other session(s); try again later")
        else:
            session.models.pop(key)
        delete_bundle(folder)
        forget(folder)
        if session.active == key:
            session.active = DEFAULT_KEY
        dropdown, table = self.refresh(request)
        return table, dropdown, f"Deleted **{key}**."

    @user_errors
    def publish(self, key: str, owner_token: str, request: gr.Request,
                profile: gr.OAuthProfile | None) -> tuple[list[list[Any]], Any, str]:
        """Owner only: copy one of this session's models into the shared models folder."""
        session = self.ctx.session(request)
        folder = self.ctx.catalog.resolve(session, key)
        access.require_owner(self.ctx.config, owner_token, profile, "publish models to everyone")
        if not key.startswith(MINE):
            raise BundleExistsError(f"'{key}' is already shared")
        name = Path(key[len(MINE):]).name
        copy_bundle(folder, self.ctx.config.models_dir / name)
        dropdown, table = self.refresh(request)
        return table, dropdown, f"Published **{name}** for every visitor as `{SHARED + name}`."


def build(ctx: Context, view: ModelsView, demo: gr.Blocks, changed: Callable[[Any], Any]) -> SimpleNamespace:
    """The Models tab and its events; ``changed(event)`` chains what follows a change of the
    session's model in other views. Returns the components other views wire to."""
    config = ctx.config
    with gr.Tab("Models", id="models"):
        table = gr.Dataframe(headers=HEADERS, label="Models you can use", interactive=False)
        with gr.Row():
            # Choices differ per session: the handlers check every value against the catalog.
            choice = gr.Dropdown([], label="Model", allow_custom_value=True)
            use = gr.Button("Use for this session", variant="primary")
            remove = gr.Button("Delete", variant="stop")
            publish = gr.Button("Publish to everyone", visible=config.public)
        owner_token = gr.Textbox(label="Owner's Hub token (to delete shared models, publish or describe them)",
                                 type="password", visible=config.public and not config.oauth)
        chosen = gr.Markdown(elem_id="model-status")
        card = gr.Markdown()
        with gr.Row():
            card_curves = gr.Image(label="Training curves", interactive=False)
            card_confusion = gr.Image(label="Confusion matrix", interactive=False)
            card_reliability = gr.Image(label="Reliability", interactive=False)
        with gr.Accordion("Describe it for visitors (the Classify view's header and the page's title)", open=False):
            with gr.Row():
                title = gr.Textbox(label="Title", placeholder="e.g. Trash sorter", elem_id="describe-title")
                author = gr.Textbox(label="Made by", placeholder="your name or Hub username")
            description = gr.Textbox(label="One-line description", placeholder="e.g. Which bin: cardboard, glass, "
                                     "metal, paper or plastic", elem_id="describe-description")
            describe = gr.Button("Save description")
        teachable = _teachable_import()
        compare_models, compare_zip, compare_button, compare_table = _comparison()
    card_outputs = [card, card_curves, card_confusion, card_reliability]
    changed(use.click(view.use, choice, chosen, api_name="use_model", **QUICK)
            .then(view.show, choice, card_outputs, api_name=False, **QUICK))
    choice.input(view.show, choice, card_outputs, api_name="model_card", **QUICK)
    changed(describe.click(view.describe, [choice, title, description, author, owner_token], card_outputs,
                           api_name="describe_model", **QUICK))
    remove.click(view.delete, [choice, owner_token], [table, choice, chosen], api_name="delete_model", **QUICK)
    publish.click(view.publish, [choice, owner_token], [table, choice, chosen], api_name="publish_model", **QUICK)
    tm_zip, tm_name, tm_import, tm_status = teachable
    changed(tm_import.click(view.import_teachable, [tm_zip, tm_name], [table, choice, tm_status],
                            api_name="import_teachable_machine", **EXPORT)
            .then(view.show, choice, card_outputs, api_name=False, **QUICK))
    compare_button.click(view.compare, [compare_models, compare_zip], compare_table, api_name="compare_models",
                         **EXPORT)
    choice.change(view.compare_choices, None, compare_models, api_name=False, **QUICK)
    demo.load(view.refresh, None, [choice, table], api_name=False, **QUICK) \
        .then(view.show, choice, card_outputs, api_name=False, **QUICK)
    gr.api(view.names, api_name="list_models", **QUICK)
    return SimpleNamespace(view=view, choice=choice, table=table)


def _teachable_import() -> tuple[Any, Any, Any, Any]:
    with gr.Accordion("Import a Teachable Machine model", open=False):
        gr.Markdown("Upload the zip Teachable Machine gave you: its TensorFlow.js, Keras or TFLite export. "
                    "It becomes a model here, with its preprocessing (centre crop, x / 127 - 1) kept.")
        with gr.Row():
            tm_zip = gr.File(label="Teachable Machine zip", file_types=[".zip"], elem_id="tm-zip")
            tm_name = gr.Textbox(label="Name", placeholder="my-tm-model")
        tm_import = gr.Button("Import", variant="primary")
        tm_status = gr.Markdown(elem_id="tm-status")
    return tm_zip, tm_name, tm_import, tm_status


def _comparison() -> tuple[Any, Any, Any, Any]:
    with gr.Accordion("Compare models on the same photos", open=False):
        gr.Markdown("Evaluate models side by side on a zip of class folders, e.g. an imported Teachable "
                    "Machine model against one trained here on the same photos.")
        with gr.Row():
            compare_models = gr.Dropdown([], multiselect=True, allow_custom_value=True, label="Models (up to 4)")
            compare_zip = gr.File(label="Labelled photos (zip of class folders)", file_types=[".zip"])
        compare_button = gr.Button("Compare")
        compare_table = gr.Dataframe(headers=list(COMPARE_COLUMNS), interactive=False, label="Side by side",
                                     elem_id="compare-table")
    return compare_models, compare_zip, compare_button, compare_table
