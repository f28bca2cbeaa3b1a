"""Visitors say "wrong": under an answer, pick the right class (or "none of these") and Send.

What is kept is stated beside the button (``CONSENT``) and is exactly what ``FeedbackStore``
writes: the photo re-encoded at 512 px without metadata, the model's answer and probabilities
(computed here, by the session's model, never taken from the page), the class picked, the time and
the model's fingerprint. Never the file name, a path, the visitor's address or account.

Gradio's flagging machinery carries it: ``FeedbackLog`` is a ``gr.FlaggingCallback`` (``setup``
with the components and a folder, ``flag`` per report, the picked class as the flag option), used
as Gradio documents for Blocks. Its own ``CSVLogger`` cannot hold what is needed: a CSV that only
grows (no oldest-first ceiling without rewriting it), uploads copied by the component (file names
kept), the whole CSV re-read on each flag, and no per-client rate; so the callback writes to
``vision.feedback_store.FeedbackStore`` instead.

The owner's side (``owner_block``, for the Train view) lists the reports and adds one, in a click,
to a class card of the owner's session; every handler there checks ``access.require_owner``.
No handler returns a report to anyone else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from vision.data.images import input_side, load_image
from vision.errors import DatasetError
from vision.feedback_store import NONE_OF_THESE, FeedbackItem, FeedbackLimits, FeedbackStore, encode_photo
from vision.serve.client import client_id
from vision.ui import access
from vision.ui.cache import get_bundle, get_classifier
from vision.ui.context import Context
from vision.ui.errors import user_errors

log = logging.getLogger(__name__)

CONSENT = ("Sending keeps, for this app's owner only: your photo (re-encoded at 512 px, without its file "
           "name, location or camera data), the model's answer and probabilities, the class you picked, the "
           "time and which model answered. Nothing else: not your address, not your account.")
#: What the owner is told when reports live in a temporary folder.
NOT_KEPT = ("Feedback is kept in a temporary folder and **lost when the app restarts**: attach persistent "
            "storage to the Space (it is used at /data/feedback) or set VISION_FEEDBACK_DIR.")
TABLE_HEADERS = ["id", "time", "model answer", "visitor's label"]
THUMBNAIL_SIDE = 160
#: Reports listed at once in the Train view (the newest).
LISTED = 200
#: What a class card's name may hold (``vision.data.samples``); other characters become "-".
_NOT_IN_CLASS_NAME = re.compile(r"[^\w .-]")


class FeedbackLog(gr.FlaggingCallback):
    """Gradio's flagging interface over a ``FeedbackStore``.

    ``flag_data`` is ``[photo_jpeg_bytes, answer]`` where ``answer`` holds ``answer``,
    ``probabilities``, ``unknown``, ``model`` and ``model_name``; ``flag_option`` is the visitor's
    class. ``username`` is ignored: the consent line promises no account is kept.
    """

    def __init__(self, limits: FeedbackLimits = FeedbackLimits()) -> None:
        self.limits = limits
        self.store: FeedbackStore | None = None
        self.components: Sequence[Any] = ()

    def setup(self, components: Sequence[Any], flagging_dir: str | Path) -> None:
        self.components = components
        self.store = FeedbackStore(flagging_dir, self.limits)

    def flag(self, flag_data: list[Any], flag_option: str | None = None, username: str | None = None) -> int:
        if self.store is None:
            raise RuntimeError("FeedbackLog.setup was not called")
        photo, answer = flag_data
        self.store.add(photo, label=flag_option or NONE_OF_THESE, **answer)
        return self.store.count


class FeedbackView:
    """The "Wrong?" block under an answer, and the owner's list in the Train view.

    Args:
        ctx: The app's context (settings, sessions, catalog). ``ctx.config.feedback_dir`` is the
            store's folder; None keeps reports in a temporary folder inside the app's state (lost
            on restart, and the owner is told so).
        train: The Train view, whose ``add_samples`` puts a report's photo on a class card.
        limits: The store's ceilings and rates.
    """

    def __init__(self, ctx: Context, train: Any = None, limits: FeedbackLimits = FeedbackLimits()) -> None:
        self.ctx, self.train = ctx, train
        folder = ctx.config.feedback_dir
        self.persistent = folder is not None
        if folder is None:
            folder = ctx.config.state_dir / "feedback"
            log.warning("visitors' feedback is kept in a temporary folder and lost on restart: set "
                        "VISION_FEEDBACK_DIR or attach persistent storage (/data) on a Space")
        self.log = FeedbackLog(limits)
        self.log.setup([], folder)

    @property
    def store(self) -> FeedbackStore:
        assert self.log.store is not None
        return self.log.store

    # -- the visitor's side ------------------------------------------------------------

    def block(self, image: gr.Image, prediction: gr.Label, **events: Any) -> gr.Group:
        """Build "Wrong? Pick the right class", Send and the consent line here (under the answer);
        it shows once ``prediction`` holds an answer. ``image`` is the Classify view's photo (a file
        path); ``events`` are the concurrency settings for its events (e.g. layout's ``QUICK``)."""
        labels = self.ctx.catalog.info(self.ctx.config.default_model).get("labels", [])
        with gr.Group(visible=False, elem_id="feedback") as group:
            with gr.Row(equal_height=True):
                # Choices differ per session (its active model): ``send`` checks the value against them.
                choice = gr.Dropdown([*labels, NONE_OF_THESE], value=None, label="Wrong? Pick the right class",
                                     allow_custom_value=True, elem_id="feedback-label", scale=2)
                send = gr.Button("Send", scale=0, min_width=80, elem_id="feedback-send")
                gr.Markdown(f"<small>{CONSENT}</small>", elem_id="feedback-consent")
            status = gr.Markdown(elem_id="feedback-status")
        self.log.components = [image, choice]
        prediction.change(self.offer, prediction, [group, choice, status], api_name=False, **events)
        send.click(self.send, [image, choice], [status, choice], api_name="send_feedback", **events)
        return group

    @user_errors
    def offer(self, answer: Any, request: gr.Request) -> tuple[Any, Any, str]:
        """Show the block with the session's model's classes once there is an answer; hide it when cleared."""
        if not answer:
            return gr.update(visible=False), gr.update(value=None), ""
        _, model = self.ctx.active_model(request)
        choices = [*get_bundle(model).labels, NONE_OF_THESE]
        return gr.update(visible=True), gr.update(choices=choices, value=None), ""

    @user_errors
    def send(self, image: str | None, label: str | None, request: gr.Request) -> tuple[str, Any]:
        """Keep one report: the photo, the session's model's answer to it, and ``label``."""
        if not image:
            raise DatasetError("add a photo and see the answer first")
        _, model = self.ctx.active_model(request)
        bundle = get_bundle(model)
        if label not in (*bundle.labels, NONE_OF_THESE):
            raise DatasetError("pick one of the model's classes, or \"none of these\"")
        # Counted before the photo is decoded: a flood costs a dictionary lookup per request.
        self.store.admit(client_id(request.request.scope) if request.request is not None else "unknown")
        classifier = get_classifier(model)
        # Decoded as the Classify view decodes it, so the answer kept is the answer shown.
        pixels = load_image(image, max_side=input_side(classifier.preprocessing.size))
        result = classifier.classify(pixels, top_k=min(len(bundle.labels), 10))
        answer = {"answer": result.nearest.label, "unknown": result.unknown, "model": bundle.fingerprint,
                  "model_name": bundle.name,
                  "probabilities": {p.label: p.probability for p in result.predictions}}
        self.log.flag([encode_photo(pixels), answer], flag_option=label)
        return f"Thank you: the app's owner will see that this is **{label}**.", gr.update(value=None)

    # -- the owner's side --------------------------------------------------------------

    def owner_block(self, samples: gr.Dataframe, **events: Any) -> None:
        """Build the owner's list of reports here (in the Train view): a click on a photo adds it to
        the class card of the visitor's label; ``samples`` is the Train view's class table, which
        the cards are drawn from. ``events`` as for ``block``."""
        config = self.ctx.config
        with gr.Accordion("Visitors' feedback (owner only)", open=False, elem_id="feedback-owner"):
            token = gr.Textbox(label="Owner's Hub token", type="password",
                               visible=config.public and not config.oauth)
            show = gr.Button("Show feedback", elem_id="feedback-show")
            note = gr.Markdown(elem_id="feedback-note")
            gallery = gr.Gallery(label="Click a photo to add it to the class the visitor picked", columns=6,
                                 height=420, allow_preview=False, elem_id="feedback-gallery")
            # What /feedback answers scripts (ids for /add_feedback_to_class); the page shows the gallery.
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, visible=False)
        show.click(self.listing, token, [gallery, table, note], api_name="feedback", **events)
        gallery.select(self.add_selected, [table, token], [samples, note], api_visibility="private", **events)
        gr.api(self.add_to_class, api_name="add_feedback_to_class", **events)

    @user_errors
    def listing(self, owner_token: str, request: gr.Request,
                profile: gr.OAuthProfile | None) -> tuple[list[tuple[Image.Image, str]], list[list[str]], str]:
        """Owner only: the newest reports as thumbnails with captions, and as a table."""
        access.require_owner(self.ctx.config, owner_token, profile, "see visitors' feedback")
        items = self.store.items()[:LISTED]
        gallery = [(self._thumbnail(item), _caption(item)) for item in items]
        rows = [[item.id, item.time, item.answer, item.label] for item in items]
        note = f"{self.store.count} reports ({self.store.bytes / 1e6:.1f} MB)."
        return gallery, rows, note if self.persistent else f"{note} {NOT_KEPT}"

    def _thumbnail(self, item: FeedbackItem) -> Image.Image:
        with Image.open(self.store.photo(item.id)) as photo:
            photo.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            return photo.convert("RGB")

    @user_errors
    def add_selected(self, rows: Any, owner_token: str, selected: gr.SelectData, request: gr.Request,
                     profile: gr.OAuthProfile | None) -> tuple[Any, str]:
        """The gallery's click: the photo clicked goes to the class the visitor picked."""
        values = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
        index = int(selected.index)
        if not 0 <= index < len(values):
            raise DatasetError("that report is no longer listed: show feedback again")
        return self.add_to_class(str(values[index][0]), "", owner_token, request, profile)

    @user_errors
    def add_to_class(self, item_id: str, class_name: str, owner_token: str, request: gr.Request,
                     profile: gr.OAuthProfile | None) -> tuple[list[list[Any]], str]:
        """Owner only: put report ``item_id``'s photo on the owner's class card ``class_name`` (empty:
        the visitor's label). Returns the Train view's class table and a note."""
        access.require_owner(self.ctx.config, owner_token, profile, "use visitors' feedback")
        if self.train is None:
            raise DatasetError("this app has no Train view to add samples to")
        item = self.store.get(item_id)
        if item is None:
            raise DatasetError("that report is no longer kept (the oldest are dropped as new ones come)")
        name = (class_name or "").strip() or class_card_name(item.label)
        table, _, _ = self.train.add_samples(name, str(self.store.photo(item.id)), None, request)
        return table, f"Added the photo to **{name}**."


def class_card_name(label: str) -> str:
    """A label as a class card may be named (1-40 letters, digits, spaces, '.', '_' or '-')."""
    name = _NOT_IN_CLASS_NAME.sub("-", label).strip(" .-")[:40].strip()
    return name or "unnamed"


def _caption(item: FeedbackItem) -> str:
    said = f"not sure ({item.answer})" if item.unknown else item.answer
    return f"model: {said} → visitor: {item.label} · {item.time.replace('T', ' ')[:16]}"
