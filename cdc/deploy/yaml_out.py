"""YAML as people write it: block style, keys in the order given, strings quoted only where
YAML needs it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key, as kubectl and compose docs do.
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &anchors: each manifest reads on its own


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _escape(value: Any) -> Any:
    # Compose interpolates ${...} everywhere; $$ is a literal $.
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def dump(document: Any, *, escape_dollar: bool = False) -> str:
    data = _escape(document) if escape_dollar else document
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def dump_all(documents: Iterable[Any]) -> str:
    return "---\n".join(dump(d) for d in documents)
