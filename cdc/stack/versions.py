"""Component versions, read from the pinned pom so every way of running the stack agrees."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache

from cdc.stack.jvm import pom_dir

_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# The local stack runs the machine's PostgreSQL 15 binaries; containers run this release.
POSTGRES_MAJOR = "15"
POSTGRES_IMAGE_VERSION = "15.18"


@cache
def versions() -> dict[str, str]:
    """``kafka``, ``debezium``, ``apicurio.registry``... from ``<properties>version.*``."""
    root = ET.parse(pom_dir() / "pom.xml").getroot()  # noqa: S314 - our own file
    props = root.find("m:properties", _NS)
    assert props is not None
    return {
        el.tag.split("}")[1].removeprefix("version."): (el.text or "").strip()
        for el in props
        if el.tag.split("}")[1].startswith("version.")
    }
