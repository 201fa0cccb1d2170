"""SIGKILL in the middle of a backlog, then a restart: the example application's effects
match what the source tables imply exactly: no change lost, none applied twice (the running
comment total is kept by the ledger). SIGTERM then stops the consumer with every offset
committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

ROOT = Path(__file__).parents[2]
USERS, POSTS, COMMENTS = 10, 10, 3000


def start(
    pipeline: Pipeline, log: Path, handlers: str = "handlers", cwd: Path = ROOT, **env: str
) -> subprocess.Popen[str]:
    """`cdc run` on ``handlers`` (the example's by default) found in ``cwd``, logging to ``log``
    (a pipe would fill and block it); ``env``: more settings."""
    env = {
        **os.environ,
        **pipeline.stack.env(),
        "CDC_WATCHED_TABLES": str(pipeline.file),
        "CDC_HANDLERS": handlers,
        "CDC_GROUP_ID": pipeline.id,
        "CDC_HTTP_PORT": "0",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cdc", "run"],
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait(pipeline: Pipeline, query: str, params: Any, until: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pipeline.sql(query, params)[0][0]
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_sigkill_mid_backlog_loses_nothing_and_applies_nothing_twice(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    example = yaml.safe_load((ROOT / "cdc.yaml").read_text())
    connector = {k: v for k, v in example["connector"].items() if k in ("encoding",)}
    outbox = {k: v for k, v in example["outbox"].items() if k != "topic_prefix"}
    pipeline.write_file(
        example["tables"], outbox=outbox, workloads=example.get("workloads"), **connector
    )
    pipeline.sql((ROOT / "handlers" / "schema.sql").read_text())
    pipeline.apply()

    tag = pipeline.id
    users = [
        pipeline.sql(
            "INSERT INTO users (handle, email) VALUES (%s, %s) RETURNING id",
            (f"{tag}_{i}", f"{tag}_{i}@example.org"),
        )[0][0]
        for i in range(USERS)
    ]
    posts = [
        pipeline.sql(
            "INSERT INTO posts (author_id, title) VALUES (%s, %s) RETURNING id",
            (users[i % USERS], f"{tag} post {i}"),
        )[0][0]
        for i in range(POSTS)
    ]
    with pipeline.db.transaction():
        pipeline.db.cursor().executemany(
            "INSERT INTO comments (post_id, author_id, body) VALUES (%s, %s, 'c')",
            [(posts[i % POSTS], users[(i * 7) % USERS]) for i in range(COMMENTS)],
        )
    mine = "SELECT coalesce(sum(comments), 0) FROM user_stats WHERE user_id = ANY(%s)"

    # First run: killed while the comment backlog is being worked through.
    first = start(pipeline, tmp_path / "first.log")
    try:
        counted = wait(pipeline, mine, (users,), lambda n: n >= COMMENTS // 10, timeout=60)
    finally:
        first.kill()
        first.wait(timeout=30)
    first_log = (tmp_path / "first.log").read_text()
    assert first.returncode == -signal.SIGKILL, first_log[-5000:]
    assert COMMENTS // 10 <= counted < COMMENTS, f"killed at {counted}: {first_log[-5000:]}"

    # Second run: picks up from the last committed offsets, which lag behind what was done.
    second = start(pipeline, tmp_path / "second.log")
    try:
        counted = wait(pipeline, mine, (users,), lambda n: n >= COMMENTS)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    log = (tmp_path / "second.log").read_text()
    assert counted == COMMENTS, f"{counted} of {COMMENTS} comments counted: {log[-5000:]}"
    assert second.returncode == 0, log[-5000:]
    assert "consumer.stopped" in log
    # Redelivered changes the first run had already counted were recognised and skipped.
    assert "handler.duplicate" in log

    # Every effect is exactly what the source rows imply.
    per_user = dict(
        pipeline.sql(
            "SELECT author_id, count(*) FROM comments WHERE author_id = ANY(%s) GROUP BY 1",
            (users,),
        )
    )
    stats = dict(
        pipeline.sql("SELECT user_id, comments FROM user_stats WHERE user_id = ANY(%s)", (users,))
    )
    assert {u: stats.get(u, 0) for u in users} == {u: per_user.get(u, 0) for u in users}
    posts_per_user = dict(
        pipeline.sql(
            "SELECT author_id, count(*) FROM posts WHERE author_id = ANY(%s) GROUP BY 1", (users,)
        )
    )
    assert dict(
        pipeline.sql("SELECT user_id, posts FROM user_stats WHERE user_id = ANY(%s)", (users,))
    ) == {u: posts_per_user.get(u, 0) for u in users}
    assert pipeline.sql(
        "SELECT count(*), count(DISTINCT user_id) FROM notifications "
        "WHERE kind = 'welcome' AND user_id = ANY(%s)",
        (users,),
    ) == [(USERS, USERS)]
    audited = pipeline.sql(
        "SELECT table_name, count(*) FROM audit_log "
        "WHERE (table_name = 'public.users' AND (row_key->>'id')::bigint = ANY(%s)) "
        "OR (table_name = 'public.posts' AND (row_key->>'id')::bigint = ANY(%s)) GROUP BY 1",
        (users, posts),
    )
    assert dict(audited) == {"public.users": USERS, "public.posts": POSTS}
    # One ledger row per counted comment, written with the count.
    recorded = pipeline.sql(
        "SELECT count(*) FROM cdc_processed_changes WHERE handler = %s "
        "AND (substring(change_key FROM '/c/(.*)$')::jsonb->>'id')::bigint IN "
        "(SELECT id FROM comments WHERE author_id = ANY(%s))",
        ("handlers.comments.count_comments", users),
    )
    assert recorded == [(COMMENTS,)]

    # SIGTERM committed every record of every topic.
    group = Consumer({"bootstrap.servers": pipeline.stack.kafka_bootstrap, "group.id": tag})
    try:
        for table in ("users", "posts", "comments"):
            tp = TopicPartition(pipeline.topic(table), 0)
            (committed,) = group.committed([tp], timeout=10)
            _, end = group.get_watermark_offsets(tp, timeout=10)
            assert committed.offset == end, (table, committed.offset, end)
    finally:
        group.close()
