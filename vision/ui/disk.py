"""What files on disk cost: one walk for the model cache's sizes, a session's quota and the
upload folder's ceiling."""

from __future__ import annotations

import os
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (0 when it is missing).

    Links are not followed, so a link a bundle or an upload carries cannot make another folder
    count (or a loop count forever); what vanishes during the walk (Gradio's cache sweep, a
    session ending) is skipped.
    """
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
