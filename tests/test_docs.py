"""The README's links into the documentation, and the site's pages, point at files that exist.

The site's own build (`make docs`, mkdocs --strict) checks links between its pages; the
README sits outside the site, so its links are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def relative_links(markdown: str) -> list[str]:
    return [target for target in LINK.findall(markdown) if not re.match(r"[a-z]+:", target)]


def test_every_relative_link_of_the_readme_names_a_file_or_folder_that_exists() -> None:
    links = relative_links((ROOT / "README.md").read_text())
    assert "docs/guides/sweeps.md" in links  # the scan finds the README's links
    missing = [target for target in links if not (ROOT / target).exists()]
    assert missing == []


def test_every_documentation_page_is_in_the_sites_navigation() -> None:
    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [page for value in node.values() for page in pages(value)]
        if isinstance(node, list):
            return [page for item in node for page in pages(item)]
        return []

    nav = pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    on_disk = sorted(str(path.relative_to(ROOT / "docs")) for path in (ROOT / "docs").rglob("*.md"))
    assert sorted(nav) == on_disk
