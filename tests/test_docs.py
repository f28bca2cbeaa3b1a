"""The README is a short front door whose links all lead somewhere; the guide behind it is a
MkDocs site (`make test` builds it with --strict, which fails on a broken link inside docs/)."""

from __future__ import annotations

import re
import sys

import yaml

from conftest import REPO

README = REPO / "README.md"
MAX_LINES = 150
#: [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _relative_links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_the_readme_is_a_front_door_of_at_most_150_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines: move the detail into docs/"


def test_every_relative_link_in_the_readme_resolves_to_a_file():
    links = _relative_links(README.read_text())
    assert len(links) >= 10  # the guide pages and the pictures: a regex that found none would pass vacuously
    missing = [t for t in links if not (REPO / t.split("#")[0]).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_link_check_sees_a_broken_link():
    assert _relative_links("see [a](docs/a.md#x), ![b](docs/b.png), [c](https://x.org), [d](#e)") == [
        "docs/a.md#x", "docs/b.png"]


def test_every_page_the_nav_names_exists_and_every_page_is_in_the_nav():
    """mkdocs.yml's nav and docs/*.md agree (the generated API pages apart), so no guide page is
    orphaned; the strict build checks the links between them."""

    def pages(items) -> list[str]:
        found = []
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            found += pages(value) if isinstance(value, list) else [value]
        return found

    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.SafeLoader)
    named = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert named == on_disk, f"in the nav only: {named - on_disk}; on disk only: {on_disk - named}"


def test_the_cli_reference_is_written_from_the_parser():
    sys.path.insert(0, str(REPO / "docs" / "hooks"))
    try:
        import cli_reference
    finally:
        sys.path.remove(str(REPO / "docs" / "hooks"))
    from vision.cli import _parser

    text = cli_reference.render()
    commands = next(a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert [line[4:-1] for line in text.splitlines() if line.startswith("## `")] == list(commands)
    sections = dict(re.findall(r"^## `([^`]+)`\n(.*?)(?=^## `|\Z)", text, re.M | re.S))
    for name, parser in commands.items():  # every option of every command, in that command's section
        options = [o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")]
        assert all(f"`{o}" in sections[name] for o in options), name
