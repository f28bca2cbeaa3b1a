"""The one scrubber of server paths (``vision.redact``): every form a library writes them in."""

from __future__ import annotations

import pytest

from vision.redact import without_paths


@pytest.mark.parametrize("text, shown", [
    ("cannot read /srv/x/models/pets.", "cannot read pets."),
    ("(/usr/lib/python3.11/x.py) and [/a/b]", "(x.py) and [b]"),
    ("/root/first at the start", "first at the start"),
    ("path=/etc/passwd: no", "path=passwd: no"),
    # after a scheme's ":" (a URL a library builds from a path)
    ("see file:/tmp/abc/x.jpg and file:///tmp/y/z.png", "see x.jpg and z.png"),
    # quoted paths are whole, spaces and all
    ("bad '/srv/my folder/x.jpg' here", "bad 'x.jpg' here"),
    ('bad "/srv/a b/c d.png"', 'bad "c d.png"'),
    # not paths
    ("http://hub:9/a/b, 1/2, hf://user/repo, a/b", "http://hub:9/a/b, 1/2, hf://user/repo, a/b"),
])
def test_paths_become_their_names(text, shown):
    assert without_paths(text) == shown


def test_an_unquoted_path_with_spaces_is_cut_whole_where_its_folders_exist(tmp_path):
    folder = tmp_path / "my photos"
    folder.mkdir()
    (folder / "cat 1.jpg").write_bytes(b"")
    assert without_paths(f"cannot open {folder}/cat 1.jpg now") == "cannot open cat 1.jpg now"
    assert without_paths(f"{folder} is empty") == "my photos is empty"
    # a word after a path is not part of it when no such file or folder exists
    assert without_paths(f"see {tmp_path}/x.jpg for details") == "see x.jpg for details"


def test_named_folders_and_a_placeholder(tmp_path):
    snapshot = tmp_path / "snapshots" / "abc"
    text = f"'{snapshot}/vision.json' is bad; see /x/y (/z) or http://hub:9/a/b, 1/2"
    assert without_paths(text, {snapshot: "a/b"}, unknown="<path>") == \
        "'a/b/vision.json' is bad; see <path> (<path>) or http://hub:9/a/b, 1/2"
    assert without_paths(f"{snapshot}", {snapshot: ""}) == "."
    assert without_paths(f"{snapshot}/saved_model/x", {snapshot: ""}) == "saved_model/x"


def test_windows_paths():
    assert without_paths(r"see C:\Users\me\model.h5 now") == "see model.h5 now"
