"""Fetch the pinned JVM parts (debezium/pom.xml) with Maven into a reusable cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from cdc.errors import StackError

_READY = ".complete"


def pom_dir() -> Path:
    """The pinned poms: ``CDC_POM_DIR``, the checkout's ``debezium/``, or the copy installed
    with the package."""
    if env := os.environ.get("CDC_POM_DIR"):
        return Path(env).resolve()
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "debezium"
    return checkout if (checkout / "pom.xml").exists() else package / "jvm_poms"


def cache_root() -> Path:
    return Path(os.environ.get("CDC_CACHE_DIR", Path.home() / ".cache" / "cdc")).resolve()


def _pom_hash(poms: Path) -> str:
    """Of the poms and the sources some modules build (a changed transform is a new home)."""
    digest = hashlib.sha256()
    for path in sorted(poms.rglob("*")):
        if "target" in path.parts or not path.is_file():
            continue
        digest.update(str(path.relative_to(poms)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def jvm_home(fetch: bool = True) -> Path:
    """The directory holding ``lib/``, ``plugins/`` and ``apicurio-registry/`` for the pinned
    versions (and our transforms, built), fetched with ``mvn`` on first use and reused
    afterwards."""
    poms = pom_dir()
    if not (poms / "pom.xml").exists():
        raise StackError("jvm", f"no pom.xml in {poms} (set CDC_POM_DIR)")
    home = cache_root() / "jvm" / _pom_hash(poms)
    if (home / _READY).exists():
        return home
    if not fetch:
        raise StackError("jvm", f"JVM artifacts not fetched yet into {home}: run `cdc stack fetch`")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("jvm", "Maven (mvn) is not on PATH")
    partial = home.with_name(home.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    proc = subprocess.run(
        [mvn, "-B", "-q", "-f", str(poms / "pom.xml"), "package", f"-Dcdc.jvm.home={partial}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise StackError("jvm", "mvn failed to fetch the pinned artifacts", tail)
    (partial / _READY).write_text("ok\n")
    shutil.rmtree(home, ignore_errors=True)
    partial.rename(home)
    return home
