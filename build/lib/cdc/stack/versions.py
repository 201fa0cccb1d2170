"""Component versions, read from the pinned pom so every way of running the stack agrees."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache

from cdc.stack.jvm import pom_dir

_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
POSTGRES_MAJOR = "15"


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


def images() -> dict[str, str]:
    """Container images matching the local stack's versions."""
    v = versions()
    return {
        "postgres": f"postgres:{POSTGRES_MAJOR}",
        "kafka": f"apache/kafka:{v['kafka']}",
        "connect": f"quay.io/debezium/connect:{v['debezium']}",
        "registry": f"apicurio/apicurio-registry:{v['apicurio.registry']}",
    }
