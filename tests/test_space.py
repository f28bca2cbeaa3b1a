"""The repository deploys as a Gradio Space as it is."""

from __future__ import annotations

import re

import yaml

from conftest import REPO


def test_readme_front_matter_is_a_valid_gradio_space_config():
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    pinned = re.search(r"^gradio(?:\[[\w,]+\])?==([\d.]+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pinned
    assert (REPO / meta["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+", str(meta["python_version"]))
    assert isinstance(meta["models"], list) and isinstance(meta["tags"], list)
    assert meta["hf_oauth"] is True  # "Sign in with Hugging Face" for public visitors (see Sharing publicly)
    assert meta["colorFrom"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert len(meta["short_description"]) <= 60
