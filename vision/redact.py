"""Server paths out of text that leaves the server: one scrubber for every message a visitor,
a Hub pull's error or an export's converter output may carry.

Libraries name the server's files in their messages (a bundle's folder, a snapshot in the Hub
cache, a converter's scratch folder, ``file:/tmp/...`` URLs). ``without_paths`` replaces each
absolute path by a name the reader knows it by: the name given for a folder it lies in, else its
last part. A path may hold spaces: a quoted path is taken whole, and an unquoted one is extended
over a space while the text up to the next ``/`` names a folder that exists here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

# Where an absolute path starts: an optional "file:" or "file://" scheme, then a "/" that begins
# a word ("1/2", "a/b" and the slashes of "http://host/x" or "hf://user/repo" do not start one),
# or a Windows drive ("C:\\Users").
_START = re.compile(r"(?<![\w.~:/-])(?:file:(?://)?)?(?=/[^/\s])|(?<![\w.~:/\\-])(?=[A-Za-z]:\\)")
# What an unquoted path runs over; the "." "," ":" ";" that end a sentence are trimmed off after.
_RUN = re.compile(r"[^\s'\"`()\[\]{}<>,;]+")
_QUOTES = "'\"`"
_TRAILING = ".,:;!?"


def without_paths(text: str, names: Mapping[str | Path, str] | None = None, unknown: str | None = None) -> str:
    """``text`` with every absolute path replaced.

    Args:
        names: folders the reader knows by a name (a pulled repo's snapshot -> ``user/repo``, an
            export's scratch folder -> ``""``): a path inside one becomes that name joined with the
            rest of the path.
        unknown: what any other path becomes; its last part when None (``/srv/x/models/pets`` ->
            ``pets``).
    """
    roots = sorted(((_forms(folder), name) for folder, name in (names or {}).items()), key=lambda r: -len(r[0][0]))
    out, position = [], 0
    for start in _START.finditer(text):
        begin = start.start()
        if begin < position:
            continue
        path_at = start.end()
        end = _path_end(text, path_at)
        out.append(text[position:begin])
        out.append(_replacement(text[path_at:end], roots, unknown))
        position = end
    out.append(text[position:])
    return "".join(out)


def _forms(folder: str | Path) -> tuple[str, ...]:
    """The spellings a folder may have in a message: as given (when absolute), absolute, resolved."""
    forms = {os.path.abspath(folder), os.path.realpath(folder)}
    return tuple(sorted(forms, key=len, reverse=True))


def _path_end(text: str, begin: int) -> int:
    """Where the path that starts at ``begin`` ends."""
    before = text[begin - 1] if begin else ""
    if before and before in _QUOTES:  # a quoted path is whole up to its closing quote, spaces and all
        close = text.find(before, begin)
        return close if close != -1 else len(text)
    run = _RUN.match(text, begin)
    end = run.end() if run else begin
    # Extend over " word" while the path so far, plus the word up to its next "/", is a folder
    # that exists: "/tmp/my photos/cat.jpg" is one path, "/tmp/cat.jpg for" is not.
    while end < len(text) and text[end] == " ":
        word = _RUN.match(text, end + 1)
        if not word:
            break
        candidate = text[begin:word.end()]
        head = text[begin:end + 1 + word.group().find("/")] if "/" in word.group() else candidate
        if not os.path.isdir(head) and not os.path.exists(candidate.rstrip(_TRAILING)):
            break
        end = word.end()
    while end > begin + 1 and text[end - 1] in _TRAILING:
        end -= 1
    return end


def _replacement(path: str, roots: list[tuple[tuple[str, ...], str]], unknown: str | None) -> str:
    pure = PureWindowsPath(path) if path[1:3] == ":\\" else PurePosixPath(path)
    for forms, name in roots:
        for form in forms:
            if pure.is_relative_to(form):
                rest = pure.relative_to(form).as_posix()
                return "/".join(part for part in (name, "" if rest == "." else rest) if part) or "."
    if unknown is not None:
        return unknown
    return pure.name or "/"
