"""deploy/Dockerfile. No image builder runs on our machines, so this checks what can be
checked without one: pinned bases, the stages, the user, the entrypoint and health check, and
the build stage's wheel, built here from exactly the context Docker would send."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

from cdc.stack.images import ADDED_PLUGINS, images
from cdc.stack.jvm import jvm_home
from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CONNECT_DOCKERFILE = ROOT / "deploy" / "connect.Dockerfile"


def parsed(path: Path = DOCKERFILE) -> DockerfileParser:
    return DockerfileParser(fileobj=path.open("rb"))


def stages(path: Path = DOCKERFILE) -> list[list[dict[str, Any]]]:
    """Instructions per stage."""
    out: list[list[dict[str, Any]]] = []
    for instruction in parsed(path).structure:
        if instruction["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def global_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults."""
    args = {}
    for instruction in parsed(path).structure:
        if instruction["instruction"] == "FROM":
            break
        if instruction["instruction"] == "ARG":
            name, _, default = instruction["value"].partition("=")
            args[name] = default
    return args


def base_images(path: Path = DOCKERFILE) -> list[str]:
    args = global_args(path)
    return [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[0]["value"].split()[0])
        for stage in stages(path)
    ]


def final_stage_uid() -> int:
    users = [i["value"] for i in stages()[-1] if i["instruction"] == "USER"]
    assert users, "the final stage sets a USER"
    return int(users[-1].split(":")[0])


def test_bases_are_pinned_and_slim() -> None:
    images = base_images()
    assert len(images) == 2, "a build stage and a runtime stage"
    for image in images:
        # A full version (not a moving major or `latest`), or a digest.
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image
    assert len(set(images)) == 1, "both stages on the same base"
    assert "AS build" in stages()[0][0]["value"]


def test_runtime_stage_runs_cdc_as_an_unprivileged_user() -> None:
    final = stages()[-1]
    kinds = [i["instruction"] for i in final]
    assert final_stage_uid() >= 1000
    # USER comes before ENTRYPOINT/CMD, after the installs that need root.
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    exec_form = {
        i["instruction"]: i["value"] for i in final if i["instruction"] in ("ENTRYPOINT", "CMD")
    }
    assert exec_form == {"ENTRYPOINT": '["cdc"]', "CMD": '["run"]'}
    # Only wheels from the build stage: no compiler, no index at run time.
    runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
    assert "--no-index" in runs
    assert "apt-get" not in runs
    assert any(
        i["instruction"] == "RUN" and "--mount=type=bind,from=build" in i["value"] for i in final
    )


def test_health_check_asks_the_consumers_healthz() -> None:
    (check,) = [i["value"] for i in stages()[-1] if i["instruction"] == "HEALTHCHECK"]
    assert "/healthz" in check
    assert "CDC_HTTP_PORT" in check
    env = " ".join(i["value"] for i in stages()[-1] if i["instruction"] == "ENV")
    assert "CDC_HTTP_PORT=9400" in env
    exposed = [i["value"] for i in stages()[-1] if i["instruction"] == "EXPOSE"]
    assert exposed == ["9400"]


def _context(tmp: Path) -> Path:
    """The files Docker sends for ``docker build -f deploy/Dockerfile .``, copied to ``tmp``."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = tmp / "context"
    for rel in exclude_paths(str(ROOT), patterns, dockerfile="deploy/Dockerfile"):
        source = ROOT / rel
        if source.is_file():
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / rel)
    return context


def test_build_context_and_build_stage(tmp_path: Path) -> None:
    context = _context(tmp_path)
    sent = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    # What the stages copy is in the context; local state and tests are not.
    for needed in ("pyproject.toml", "README.md", "cdc/cli/__init__.py", "debezium/pom.xml",
                   "handlers/schema.sql", "handlers/demo.py", "cdc.yaml"):  # fmt: skip
        assert needed in sent, needed
    assert not [p for p in sent if p.startswith((".venv", ".cdc", ".git", "tests/", "bench/"))]
    assert not [p for p in sent if "__pycache__" in p]

    # The build stage: its COPYs, then `pip wheel` of what they copied.
    src = tmp_path / "src"
    for instruction in stages()[0]:
        if instruction["instruction"] == "COPY":
            *sources, dest = instruction["value"].split()
            for name in sources:
                target = src / dest / Path(name).name if dest.endswith("/") else src / dest
                copy = shutil.copytree if (context / name).is_dir() else shutil.copy2
                target.parent.mkdir(parents=True, exist_ok=True)
                copy(context / name, target)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("reactive_cdc-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "cdc = cdc.cli:main" in zf.read(entry_points).decode()
    # The pins travel with the package: versions and `cdc stack fetch` work installed, our
    # transforms' sources with them.
    assert "cdc/jvm_poms/pom.xml" in names
    assert (
        "cdc/jvm_poms/transforms/src/main/java/dev/cdc/connect/DropNullableDefaults.java" in names
    )
    assert "cdc/deploy/compose.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_connect_image_adds_the_local_stacks_plugins(tmp_path: Path) -> None:
    """deploy/connect.Dockerfile: the pinned Debezium image plus the Apicurio converter and
    our transforms, fetched and built by the plugins stage with our pom: its RUN, run here,
    gives the same jars the local stack's worker loads."""
    maven, connect = base_images(CONNECT_DOCKERFILE)
    assert re.fullmatch(r"maven:\d+\.\d+\.\d+-eclipse-temurin-17", maven), maven
    assert connect == images()["connect"]
    plugins, final = stages(CONNECT_DOCKERFILE)
    (copy_poms,) = [i["value"] for i in plugins if i["instruction"] == "COPY"]
    assert copy_poms == "debezium /debezium"
    (run,) = [i["value"] for i in plugins if i["instruction"] == "RUN"]
    (copy_plugins,) = [i["value"] for i in final if i["instruction"] == "COPY"]
    source, target = copy_plugins.removeprefix("--from=plugins ").split()
    assert target == "/kafka/connect"

    poms = _context(tmp_path) / "debezium"
    out = tmp_path / "out"
    argv = run.replace("/debezium/", f"{poms}/").replace("=/out", f"={out}").split()
    subprocess.run(argv, check=True, capture_output=True)
    made = out / source.removeprefix("/out/")
    local = jvm_home(fetch=False) / "plugins"
    assert sorted(p.name for p in made.iterdir()) == sorted(ADDED_PLUGINS)
    for plugin in ADDED_PLUGINS:
        assert sorted(p.name for p in (made / plugin).iterdir()) == sorted(
            p.name for p in (local / plugin).iterdir()
        ), plugin
    assert any(p.name.startswith("apicurio-registry-utils-converter-") for p in made.rglob("*"))
    # Our transform, built from the sources in the context: the same bytes as the local one.
    jar = Path("cdc-transforms", "cdc-transforms.jar")
    assert (made / jar).read_bytes() == (local / jar).read_bytes()
