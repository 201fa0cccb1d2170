"""The README sells in one screen and points into the docs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_it_opens_with_the_two_commands() -> None:
    fence = README.index("```bash\n")
    commands = README[fence:].split("\n")[1:3]
    assert [line.split()[:2] for line in commands] == [["make", "run"], ["make", "test"]]
    assert README[:fence].count("\n") <= 2  # only the title above them


def test_it_is_short() -> None:
    assert README.count("\n") <= 200


def test_its_links_into_the_docs_resolve() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", README)
    assert links
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing
