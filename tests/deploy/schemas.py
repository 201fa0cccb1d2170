"""Schemas to validate deployment files against: Strimzi's CRDs, generated from the pinned
Strimzi API model with Strimzi's own generator (tests/deploy/strimzi/pom.xml)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cdc.stack.jvm import cache_root

POM = Path(__file__).parent / "strimzi" / "pom.xml"
CRD_CLASSES = {
    "KafkaConnect": "io.strimzi.api.kafka.model.connect.KafkaConnect",
    "KafkaConnector": "io.strimzi.api.kafka.model.connector.KafkaConnector",
}
_GENERATOR = "io.strimzi.crdgenerator.CrdGenerator"


def _java_major(home: Path) -> int:
    release = home / "release"
    if not release.is_file():
        return 0
    found = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.MULTILINE)
    return int(found.group(1)) if found else 0


def java_21() -> Path:
    """A ``java`` of version 21 or later: ``CDC_JAVA21_HOME``, ``JAVA_HOME`` or one of the
    JDKs in /usr/lib/jvm (the machine's default Java 17 runs the stack)."""
    homes = [os.environ.get("CDC_JAVA21_HOME"), os.environ.get("JAVA_HOME")]
    jvms = Path("/usr/lib/jvm")
    found = [*(Path(h) for h in homes if h), *(sorted(jvms.iterdir()) if jvms.is_dir() else [])]
    for home in found:
        if _java_major(home) >= 21 and (home / "bin" / "java").exists():
            return home / "bin" / "java"
    raise RuntimeError(
        "Strimzi's CRD generator needs Java 21 or later: none in CDC_JAVA21_HOME, JAVA_HOME "
        "or /usr/lib/jvm"
    )


@cache
def strimzi_schemas() -> dict[str, dict[str, Any]]:
    """``openAPIV3Schema`` of each Strimzi kind's stored version, by kind."""
    home = cache_root() / "strimzi" / hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    crds = {kind: home / f"{kind}.yaml" for kind in CRD_CLASSES}
    if not all(p.exists() for p in crds.values()):
        mvn = shutil.which("mvn")
        assert mvn, "Maven (mvn) is not on PATH"
        lib = home / "lib"
        subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={lib}",
                f"-Dmdep.outputDirectory={lib}",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        subprocess.run(
            [
                str(java_21()),
                "-cp",
                f"{lib}/*",
                _GENERATOR,
                "--yaml",
                "--crd-api-version",
                "v1",
                *(f"{CRD_CLASSES[kind]}={path}" for kind, path in crds.items()),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    schemas = {}
    for kind, path in crds.items():
        crd = yaml.safe_load(path.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        schemas[kind] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as ``kubectl apply --validate=strict`` does,
    where the CRD does not keep them (``x-kubernetes-preserve-unknown-fields``)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        out.get("type") == "object"  # not the branches of a oneOf, which only add required
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


OPERATOR_CRDS = Path(__file__).parent / "prometheus_operator"


@cache
def prometheus_operator_schemas() -> dict[str, dict[str, Any]]:
    """``openAPIV3Schema`` of the Prometheus Operator's kinds we make, by kind (the CRDs
    copied in tests/deploy/prometheus_operator), strict as `strict` makes them."""
    schemas = {}
    for path in sorted(OPERATOR_CRDS.glob("*.yaml")):
        # Go's regexes take a flag group after `^`; Python's only at the very start.
        crd = yaml.safe_load(path.read_text().replace("^(?i)", "(?i)^"))
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        schemas[crd["spec"]["names"]["kind"]] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def validate_strimzi(manifests: dict[str, list[dict[str, Any]]]) -> None:
    """The rendered KafkaConnect and KafkaConnector, each against Strimzi's own CRD."""
    import jsonschema

    schemas = strimzi_schemas()
    for kind in ("KafkaConnect", "KafkaConnector"):
        (doc,) = manifests[kind]
        jsonschema.validate(doc, schemas[kind])
