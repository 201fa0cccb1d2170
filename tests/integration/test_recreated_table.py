"""A watched table dropped and re-created while the consumer runs leaves the publication
(PostgreSQL drops it from the publication with the table), so none of its changes are
captured. The running consumer says so (log, metric, `/readyz`), and `cdc connector apply`
puts it back and brings the rows written meanwhile, through an incremental snapshot."""

from __future__ import annotations

import textwrap
from functools import partial
from pathlib import Path

import httpx
import pytest

from cdc.findings import apply_fix
from tests.integration.conftest import Pipeline
from tests.integration.test_kill import start
from tests.integration.test_large_records import eventually, http_port, log_lines
from tests.integration.test_ops import cdc

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_a_recreated_table_is_reported_and_apply_brings_back_its_rows(
    pipeline: Pipeline, tmp_path: Path, encoding: str
) -> None:
    table = pipeline.table("items")
    create = f"CREATE TABLE {table} (id int PRIMARY KEY, v text)"
    pipeline.sql(create)
    # The rows written while the table was not captured come back as snapshot reads (op r).
    pipeline.write_file({table: {"snapshot_reads": True}}, encoding=encoding)
    pipeline.apply()
    (tmp_path / "item_handlers.py").write_text(
        textwrap.dedent(f"""
            from cdc import on_change

            @on_change("public.{table}")
            def item(change, ctx):
                ctx.log.info("item.handled", id=change.row["id"], op=change.op.value)
        """)
    )
    log = tmp_path / "consumer.log"
    consumer = start(pipeline, log, "item_handlers", tmp_path, CDC_CAPTURE_CHECK_INTERVAL_S="1")
    try:
        lines = partial(log_lines, log)
        base = f"http://127.0.0.1:{http_port(log)}"

        def handled() -> list[tuple[int, str]]:
            return sorted((x["id"], x["op"]) for x in lines() if x["event"] == "item.handled")

        eventually(lambda: httpx.get(f"{base}/readyz").status_code, lambda s: s == 200)
        pipeline.sql(f"INSERT INTO {table} VALUES (1, 'captured')")
        eventually(handled, lambda h: h == [(1, "c")])

        # A migration re-creates the table; rows go on being written.
        with pipeline.db.transaction():
            pipeline.sql(f"DROP TABLE {table}")
            pipeline.sql(create)
        for i in (2, 3, 4):
            pipeline.sql(f"INSERT INTO {table} VALUES (%s, 'in between')", (i,))

        stopped = eventually(lambda: [x for x in lines() if x["event"] == "capture.stopped"], bool)
        assert [(x["connector"], x["check"], x["subject"]) for x in stopped] == [
            (pipeline.name, "publication", f"public.{table}")
        ]
        assert (
            f"is not in publication {pipeline.id} (dropped and re-created?)"
            in (stopped[0]["problem"])
        )
        assert stopped[0]["remedy"].startswith(apply_fix(str(pipeline.file)))
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert f"capture of connector {pipeline.name} stopped: public.{table}" in ready.text
        metrics = httpx.get(f"{base}/metrics").text
        assert (
            f'cdc_capture_problems{{check="publication",connector="{pipeline.name}"}} 1.0'
            in metrics
        )
        assert handled() == [(1, "c")]  # nothing of the re-created table arrived

        applied = cdc(pipeline, "connector", "apply")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        pipeline.sql(f"INSERT INTO {table} VALUES (5, 'after')")
        eventually(handled, lambda h: h == [(1, "c"), (2, "r"), (3, "r"), (4, "r"), (5, "c")])
        eventually(lambda: [x["event"] for x in lines()], lambda e: "capture.resumed" in e)
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        consumer.terminate()
        consumer.wait(60)
