"""MkDocs hook: the command-line reference, written from ``vision.cli._parser()`` at build time.

The page ``reference/cli.md`` holds the marker below; every build replaces it with one section
per sub-command (its usage, description and a table of its arguments), so the reference cannot
drift from the parser. ``vision.cli`` imports without TensorFlow, so the build stays quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
PAGE = "reference/cli.md"


def _parser() -> argparse.ArgumentParser:
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:  # `mkdocs build` from the repository root, without installing vision
        sys.path.insert(0, root)
    from vision.cli import _parser as build

    return build()


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and `<x>` outside code spans shown, not read as HTML."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = " " + formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
            name = ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
        else:
            name = f"`{formatter._format_args(action, formatter._get_default_metavar_for_positional(action))}`"
        # _expand_help fills %(default)s and friends exactly as `--help` prints them
        help_text = formatter._expand_help(action) if action.help else ""
        default = action.default
        hidden = default is None or default is False or default is argparse.SUPPRESS or action.nargs == 0
        shown = "" if hidden else f"`{default}`"
        rows.append(f"| {name} | {_cell(help_text)} | {shown} |")
    return rows


def _subcommand(name: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## `{name}`", ""]
    if parser.description:
        lines += [parser.description.strip(), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    rows = _argument_rows(parser)
    if rows:
        lines += ["| argument | what it does | default |", "|---|---|---|", *rows, ""]
    if parser.epilog:
        lines += [parser.epilog.strip(), ""]
    return "\n".join(lines)


def render() -> str:
    """The whole reference as Markdown: one section per sub-command, in the parser's order."""
    os.environ.setdefault("COLUMNS", "100")  # argparse wraps usage lines to the terminal's width
    parser = _parser()
    parser.prog = "python -m vision"
    sections = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                sub.prog = f"python -m vision {name}"
                sections.append(_subcommand(name, sub))
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs event: fill the CLI page's marker; every other page passes through."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER!r}: the generated reference has nowhere to go")
    return markdown.replace(MARKER, render())
