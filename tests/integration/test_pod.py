"""The consumer pod as `cdc deploy kubernetes` describes it, run on the real stack: the
ConfigMaps and the Secret laid out where the Deployment mounts them, the init container's
command, then the consumer's, with its probes asked on the declared paths and a SIGTERM
answered within the grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdc.deploy import Target
from cdc.deploy import kubernetes as k8s
from cdc.settings import Settings
from cdc.stack.local import free_port
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

HANDLERS = """
from cdc import Change, Context, on_change


@on_change("public.{notes}")
def record(change: Change, ctx: Context) -> None:
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO {effects} (note_id) VALUES (%s) ON CONFLICT DO NOTHING",
            (change.row["id"],),
        )
"""


def _pod(pipeline: Pipeline, module: str, port: int) -> dict[str, Any]:
    stack = pipeline.stack
    settings = Settings(
        pg_port=stack.pg_port,
        group_id=pipeline.id,
        handlers=module,
        http_port=port,
        shutdown_deadline_s=10,
    )
    target = Target(kafka_bootstrap=stack.kafka_bootstrap, pg_host=stack.pg_host)
    docs = k8s.consumer_manifests(pipeline.file.read_text(), settings, target)
    return {d["kind"] + "/" + d["metadata"]["name"]: d for d in docs}


def _container_env(
    manifests: dict[str, Any], container: dict[str, Any], root: Path
) -> dict[str, str]:
    """The container's environment, its volumes laid out under ``root``."""
    pod = manifests["Deployment/cdc"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    where: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        local = root / mount["name"]
        local.mkdir(exist_ok=True)
        source = volumes[mount["name"]]
        if "configMap" in source:
            for key, value in manifests[f"ConfigMap/{source['configMap']['name']}"]["data"].items():
                (local / key).write_text(value)
        where[mount["mountPath"]] = str(local)
    (ref,) = container["envFrom"]
    env = dict(manifests[f"ConfigMap/{ref['configMapRef']['name']}"]["data"])
    for key, value in env.items():
        for mount_path, local in where.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                env[key] = local + value.removeprefix(mount_path)
    return env


def test_the_pod_prepares_runs_answers_its_probes_and_stops_in_time(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    notes, effects = pipeline.table("notes"), pipeline.table("effects")
    pipeline.sql(f"CREATE TABLE {notes} (id int PRIMARY KEY, body text)")
    pipeline.sql(f"CREATE TABLE {effects} (note_id int PRIMARY KEY)")
    pipeline.write_file({notes: {"replica_identity": "full"}})
    module = f"handlers_{pipeline.id}"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{module}.py").write_text(
        textwrap.dedent(HANDLERS.format(notes=notes, effects=effects))
    )
    port = free_port()
    manifests = _pod(pipeline, module, port)
    pod = manifests["Deployment/cdc"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (consumer,) = pod["containers"]

    root = tmp_path / "pod"
    root.mkdir()
    # The Secret, as Kubernetes mounts it: one file per key.
    (root / "secrets").mkdir()
    (root / "secrets" / "cdc_pg_password").write_text(pipeline.stack.app_password)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    base |= {"PYTHONPATH": str(code), "CDC_STACK_DIR": str(tmp_path / "no-local-stack")}

    def start(container: dict[str, Any]) -> subprocess.Popen[str]:
        env = base | _container_env(manifests, container, root)
        return subprocess.Popen(
            [sys.executable, "-m", "cdc", *container["args"]],
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    prepare = start(init)
    output, _ = prepare.communicate(timeout=120)
    assert prepare.returncode == 0, output
    assert pipeline.sql(
        "SELECT count(*) FROM pg_publication_tables WHERE pubname = %s AND tablename = %s",
        (pipeline.id, notes),
    ) == [(1,)]
    pipeline.put_as_strimzi(k8s.kafka_connector(pipeline.watched(), pipeline.settings, "c"))

    proc = start(consumer)
    try:
        probes = {
            kind: f"http://127.0.0.1:{port}{consumer[kind]['httpGet']['path']}"
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(probes["readinessProbe"], timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0]
        for url in probes.values():
            assert httpx.get(url, timeout=2).status_code == 200, url
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert "cdc_records_total" in metrics

        pipeline.sql(f"INSERT INTO {notes} VALUES (7, 'from the pod')")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pipeline.sql(f"SELECT * FROM {effects}"):
            time.sleep(0.5)
        assert pipeline.sql(f"SELECT note_id FROM {effects}") == [(7,)]

        # Kubernetes sends SIGTERM, and SIGKILL after the grace period.
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=pod["terminationGracePeriodSeconds"])
        assert proc.returncode == 0, output
        assert time.monotonic() - started < pod["terminationGracePeriodSeconds"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
