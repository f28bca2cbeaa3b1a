"""The app never forks (issue 28): a fork of a threaded server copies locks other threads hold,
and its child waits on them for good (cleanlab's default multiprocessing Pool hung the Train view
that way). The app runs in this process under a guard: ``os.register_at_fork`` records any fork
made below Python, and ``os.fork`` itself refuses (so a fork fails the training instead of
hanging the test). Visitors then train through the Train view's cards, and every size of a few
photos a class trains, saves and reports.
"""

from __future__ import annotations

import os
import traceback

import pytest
from gradio_client.exceptions import AppError

from app_server import launch_app
from train_client import texture_cards, train_through_app

pytestmark = pytest.mark.slow

_FORKS: list[str] = []
_GUARDING = [False]


def _record_fork() -> None:
    if _GUARDING[0]:
        _FORKS.append("".join(traceback.format_stack(limit=12)))


# Hooks cannot be removed: this one records only while a test of this module guards.
os.register_at_fork(before=_record_fork)


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory):
    """The real app in this process, with forking refused and recorded while it runs."""
    real_fork = os.fork

    def refused() -> int:
        _FORKS.append("".join(traceback.format_stack(limit=12)))
        raise OSError("fork refused: the app must not fork (tests/test_no_fork.py)")

    _FORKS.clear()
    _GUARDING[0] = True
    os.fork = refused
    app, url = launch_app(tmp_path_factory.mktemp("models"))
    try:
        yield url
    finally:
        app.close()
        os.fork = real_fork
        _GUARDING[0] = False


def test_training_from_cards_with_a_planted_mislabel_never_forks(guarded_app, tmp_path):
    """Brick, grass and gravel cards with one brick filed under grass, the view's defaults: the
    training answers, its data check runs (cleanlab, where the fork was), and nothing forked."""
    try:
        _seconds, (status, _curves, metrics, *_rest) = train_through_app(guarded_app, texture_cards(tmp_path))
    except AppError as error:  # a refused fork fails the training: show the fork first
        status = metrics = str(error)
    assert not _FORKS, "the app forked:\n" + _FORKS[0]
    assert "Saved **" in metrics and "Data check (cleanlab" in metrics, (status, metrics)
    # The data check finds the brick filed under grass (issue 30, item 6), and nothing else.
    assert "**1** likely label error(s)" in metrics, metrics


def test_five_photos_a_class_train_save_and_report_through_the_app(guarded_app, tmp_path):
    """Two classes of five photos (the size that used to fail after saving, with "Something went
    wrong (ValueError)"): saved, listed, calibrated and checked."""
    cards = texture_cards(tmp_path, per_class=5)
    photos = {"brick": cards["brick"], "gravel": cards["gravel"]}
    try:
        _seconds, (status, _curves, metrics, _confusion, _gallery, choices, *_rest) = train_through_app(
            guarded_app, photos, name="five-a-class", settings=("efficientnet_lite0", 96, 10, True, True))
    except AppError as error:
        pytest.fail(f"two classes of five photos were refused: {error}")
    assert "Saved **five-a-class**" in metrics and "Data check (cleanlab, out-of-fold on 10 images)" in metrics, metrics
    assert "Confidence calibrated" in metrics, metrics
    assert choices["value"] == "shared/five-a-class"
    assert not _FORKS, "the app forked:\n" + _FORKS[0]
