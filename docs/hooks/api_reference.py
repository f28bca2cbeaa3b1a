"""MkDocs hook: one Python API page per stage of ``vision/``, listed from the source tree.

Each page is written at build time: the stage's own docstring (its ``__init__``), then a
mkdocstrings block per module. Modules are found by listing the folder, so a module that is
added, moved or renamed is documented without editing the docs; pages go into the nav in the
stage order ``vision.STAGES`` declares (read from the source, like everything here: griffe reads
the modules without importing them).
"""

from __future__ import annotations

import ast
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2] / "vision"
INDEX = "reference/api/index.md"


def _declared_order() -> list[str]:
    """``vision.STAGES`` flattened, bottom first, read from ``vision/__init__.py``'s source."""
    tree = ast.parse((ROOT / "__init__.py").read_text())
    stages = next(node.value for node in tree.body
                  if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "STAGES")
    return [name for stage in ast.literal_eval(stages) for name in stage]


# The stage order; "vision" is the page of the top-level modules (errors, defaults, the Hub, ...).
ORDER = ["vision", *_declared_order()]
# The app's views are Gradio wiring (guide: app.md) and the CLI has its own generated page.
LEFT_OUT = {"ui", "cli", "__main__", "__init__"}


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def _stages() -> list[tuple[str, str, list[str]]]:
    """(page name, title, dotted modules) per stage, in ``ORDER`` (new folders at the end)."""
    top = sorted(f"vision.{p.stem}" for p in ROOT.glob("*.py") if p.stem not in LEFT_OUT)
    stages = [("vision", "vision (top-level modules)", top)]
    folders = [p for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name not in LEFT_OUT]
    folders.sort(key=lambda p: (ORDER.index(p.name) if p.name in ORDER else len(ORDER), p.name))
    for folder in folders:
        modules = sorted(f"vision.{folder.name}.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__")
        stages.append((folder.name, f"vision.{folder.name}", modules))
    return stages


def _page(name: str, title: str, modules: list[str]) -> str:
    intro = _docstring(ROOT / "__init__.py") if name == "vision" else _docstring(ROOT / name / "__init__.py")
    blocks = [f"::: {module}\n    options:\n      show_root_heading: true" for module in modules]
    return "\n\n".join([f"# {title}", intro, *blocks]) + "\n"


def on_config(config):
    """MkDocs event: add the stage pages under the nav entry that holds the API index."""
    entries = [{title: f"reference/api/{name}.md"} for name, title, _ in _stages()]

    def extend(items) -> bool:
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                if INDEX in value:
                    value.extend(entries)
                    return True
                if extend(value):
                    return True
        return False

    if not extend(config["nav"]):
        raise ValueError(f"mkdocs.yml's nav has no list holding {INDEX}: the API pages have no place")
    return config


def on_files(files, config):
    """MkDocs event: write the stage pages (generated, never on disk)."""
    for name, title, modules in _stages():
        files.append(File.generated(config, f"reference/api/{name}.md", content=_page(name, title, modules)))
    return files
