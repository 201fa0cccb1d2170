"""The example application under a steady write load, `cdc run` processes that can be killed,
and the check that every effect is what the source rows imply.

The writer's changes are derivable from the rows it leaves behind, so a transaction whose
commit was cut off by a fault (did it commit or not?) never makes the check guess: comment
counts come from the comments table, scores from the votes, the number of email changes from
a counter inside the address, the workflow's outcome from the posts' titles."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psycopg
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families

from cdc import emit
from cdc.connect import ConnectClient
from cdc.routing import TableHandler, discover
from cdc.stack.local import free_port
from handlers.models import PostSubmitted
from handlers.moderation import BANNED
from tests.integration.conftest import Pipeline
from tests.waiting import eventually

ROOT = Path(__file__).parents[2]
TABLES = ("users", "posts", "comments", "votes")
USERS, POSTS = 40, 20  # seeded before the load; the writer adds posts as it goes


class ExampleApp:
    """The example application (``handlers/``, ``cdc.yaml``) on a pipeline of its own: its
    own connector, slot, topics and consumer group; its rows told apart by a tag."""

    def __init__(self, pipeline: Pipeline, partitions: int = 1) -> None:
        self.pipeline = pipeline
        self.tag = pipeline.id
        example = yaml.safe_load((ROOT / "cdc.yaml").read_text())
        outbox = {k: v for k, v in example["outbox"].items() if k != "topic_prefix"}
        pipeline.write_file(
            example["tables"], outbox=outbox, workloads=example.get("workloads"), encoding="json"
        )
        # Each workload's consumer group (the app's id for `default`, <id>.<name> else), and
        # the topics its handlers read.
        self.groups: dict[str, list[str]] = {}
        for handler in discover(["handlers"]):
            if isinstance(handler, TableHandler):
                w = handler.workload
                group = pipeline.id if w == "default" else f"{pipeline.id}.{w}"
                topics = self.groups.setdefault(group, [])
                if pipeline.topic(handler.table.split(".")[1]) not in topics:
                    topics.append(pipeline.topic(handler.table.split(".")[1]))
        pipeline.sql((ROOT / "handlers" / "schema.sql").read_text())
        if partitions > 1:
            # Made before the connector, so Debezium spreads each table's rows over them by key.
            admin = AdminClient(pipeline.settings.kafka_config())  # type: ignore[arg-type]
            # The cluster's replication factor (-1): three copies on a cluster, one alone.
            topics = [NewTopic(pipeline.topic(t), partitions, -1) for t in TABLES]
            for future in admin.create_topics(topics).values():
                future.result(timeout=30)
        pipeline.apply()
        self.users: list[int] = []
        self.posts: list[int] = []

    def workload_topics(self) -> dict[str, list[str]]:
        """Each workload's name and the topics its consumer group reads."""
        return {
            "default" if group == self.tag else group.removeprefix(f"{self.tag}."): topics
            for group, topics in self.groups.items()
        }

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """``pipeline.sql``, on a new connection when a database restart broke the old one."""
        if self.pipeline.db.broken or self.pipeline.db.closed:
            self.pipeline.db = psycopg.connect(
                self.pipeline.settings.pg_conninfo(),
                autocommit=True,
                password=self.pipeline.stack.app_password,
            )
        return self.pipeline.sql(statement, params)

    @property
    def topics(self) -> list[str]:
        return [self.pipeline.topic(t) for t in TABLES]

    def seed(self, users: int, posts: int) -> None:
        sql = self.pipeline.sql
        for i in range(users):
            handle = f"{self.tag}_{i}"
            (row,) = sql(
                "INSERT INTO users (handle, email) VALUES (%s, %s) RETURNING id",
                (handle, f"{handle}+0@example.org"),
            )
            self.users.append(row[0])
        for i in range(posts):
            self.posts.append(self.submit(self.pipeline.db, self.users[i % users], i))

    def submit(self, conn: psycopg.Connection[Any], author: int, n: int) -> int:
        """A post and its ``post-submitted`` event in one transaction; every seventh is
        rejected by the workflow (a banned word in its title)."""
        title = f"{self.tag} post {n}" + (f" about the {BANNED[0]}" if n % 7 == 3 else "")
        with conn.transaction():
            (post,) = conn.execute(
                "INSERT INTO posts (author_id, title) VALUES (%s, %s) RETURNING id",
                (author, title),
            ).fetchone() or (None,)
            assert post is not None
            event = PostSubmitted(post_id=post, author_id=author, title=title)
            emit(conn, "post", post, "post-submitted", event, table="public.outbox")
        return int(post)


@dataclass
class Writer:
    """Transactions of ``batch`` changes at ``rate`` changes a second (0: as fast as the
    database takes them) until ``stop``: comments (mostly), votes cast, changed and
    withdrawn, email changes and new posts with their events. Survives database restarts."""

    app: ExampleApp
    rate: float = 0.0
    batch: int = 20
    limit: int = 0  # stop after this many changes (0: no limit)
    seed: int = 1
    committed: int = 0  # changes in transactions whose commit returned
    uncertain: int = 0  # transactions cut off by a fault: committed or not, the rows tell
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wait(self, timeout: float) -> None:
        """Until ``limit`` changes are written."""
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"writer not done: {self.committed} written"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        rnd = random.Random(self.seed)
        started = time.monotonic()
        conn: psycopg.Connection[Any] | None = None
        posts_made = len(self.app.posts)
        while not self._stop.is_set() and not (self.limit and self.committed >= self.limit):
            if self.rate:
                ahead = self.committed / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    self._stop.wait(ahead)
                    continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self.app.pipeline.settings.pg_conninfo(),
                        password=self.app.pipeline.stack.app_password,
                        connect_timeout=5,
                    )
                n = self.batch
                post = None
                with conn.transaction():
                    for _ in range(n - 1):
                        self._step(conn, rnd)
                    if rnd.random() < 0.2:
                        posts_made += 1
                        post = self.app.submit(conn, rnd.choice(self.app.users), posts_made)
                    else:
                        self._step(conn, rnd)
                if post is not None:
                    self.app.posts.append(post)
                self.committed += n
            except psycopg.OperationalError as exc:
                # The database went away mid-transaction: reconnect once it is back.
                self.uncertain += 1
                self.errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
                with contextlib.suppress(Exception):
                    assert conn is not None
                    conn.close()
                conn = None
                self._stop.wait(0.5)
        if conn is not None:
            conn.close()

    def _step(self, conn: psycopg.Connection[Any], rnd: random.Random) -> None:
        users, posts = self.app.users, self.app.posts
        roll = rnd.random()
        if roll < 0.70:
            conn.execute(
                "INSERT INTO comments (post_id, author_id, body) VALUES (%s, %s, %s)",
                (rnd.choice(posts), rnd.choice(users), "c"),
            )
        elif roll < 0.88:
            conn.execute(
                "INSERT INTO votes (post_id, voter_id, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (post_id, voter_id) DO UPDATE SET value = EXCLUDED.value",
                (rnd.choice(posts), rnd.choice(users), rnd.choice((-1, 1))),
            )
        elif roll < 0.92:
            conn.execute(
                "DELETE FROM votes WHERE post_id = %s AND voter_id = %s",
                (rnd.choice(posts), rnd.choice(users)),
            )
        else:
            # The number of changes so far lives in the address: handle+N@example.org.
            conn.execute(
                "UPDATE users SET email = handle || '+' || "
                "(split_part(split_part(email, '+', 2), '@', 1)::int + 1) || '@example.org' "
                "WHERE id = %s",
                (rnd.choice(users),),
            )


class CdcRun:
    """`cdc run` with the example handlers on the app's pipeline, as a process of its own,
    logging to a file (a pipe would fill up and block it)."""

    started: ClassVar[list[CdcRun]] = []  # killed after each test: see conftest

    def __init__(self, app: ExampleApp, log: Path, **env: str) -> None:
        self.port = free_port()
        pipeline = app.pipeline
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc", "run"],
            cwd=ROOT,
            env={
                **os.environ,
                **pipeline.stack.env(),
                "CDC_WATCHED_TABLES": str(pipeline.file),
                "CDC_HANDLERS": "handlers",
                "CDC_GROUP_ID": pipeline.id,
                "CDC_HTTP_PORT": str(self.port),
                # The drills count handler runs from their log lines (`handler.done`).
                "CDC_LOG_LEVEL": "DEBUG",
                **env,
            },
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        CdcRun.started.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL, self.tail()

    def stop(self, timeout: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def rss_mb(self, field: str = "VmRSS") -> float:
        """Resident memory now (``VmHWM``: its peak so far), from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field}")

    def metrics(self) -> dict[str, float]:
        """The unlabelled gauges and each series summed over its labels."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        out: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name] += sample.value
        return dict(out)

    def owned(self, workload: str | None = None) -> int:
        """Partitions it owns, of one workload or all (0 while it does not answer: frozen,
        or starting)."""
        try:
            if workload is None:
                return int(self.metrics().get("cdc_assigned_partitions", 0))
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
            return int(
                sum(
                    s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.name == "cdc_assigned_partitions" and s.labels.get("workload") == workload
                )
            )
        except Exception:
            return 0

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        return False

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def group_lag(app: ExampleApp) -> int:
    """Records in the app's table topics not yet committed by its consumer groups (one a
    workload)."""
    settings = app.pipeline.settings
    lag = 0
    for group_id, topics in app.groups.items():
        group = Consumer(settings.kafka_config(**{"group.id": group_id}))  # type: ignore[arg-type]
        try:
            for topic in topics:
                meta = group.list_topics(topic, timeout=10).topics[topic]
                parts = [TopicPartition(topic, p) for p in meta.partitions]
                for tp in group.committed(parts, timeout=10):
                    _, end = group.get_watermark_offsets(tp, timeout=10)
                    lag += end - max(tp.offset, 0)
        finally:
            group.close()
    return lag


def count_log(paths: list[Path], event: str) -> int:
    """How many log lines (JSON, one event each) name ``event``."""
    pattern = re.compile(rf'"event": ?"{re.escape(event)}"')
    return sum(len(pattern.findall(p.read_text(errors="replace"))) for p in paths)


def effects(app: ExampleApp) -> dict[str, Any]:
    """What the handlers derived vs what the source rows imply; ``mismatches`` lists every
    difference (empty when nothing was lost and nothing applied twice)."""
    sql = app.sql
    users, posts = app.users, app.posts
    comments_by = dict(
        sql(
            "SELECT author_id, count(*) FROM comments WHERE author_id = ANY(%s) GROUP BY 1",
            (users,),
        )
    )
    posts_by = dict(
        sql("SELECT author_id, count(*) FROM posts WHERE author_id = ANY(%s) GROUP BY 1", (users,))
    )
    stats = {
        u: (p, c)
        for u, p, c in sql(
            "SELECT user_id, posts, comments FROM user_stats WHERE user_id = ANY(%s)", (users,)
        )
    }
    scores = dict(
        sql(
            "SELECT p.id, coalesce(sum(v.value), 0)::int FROM posts p LEFT JOIN votes v "
            "ON v.post_id = p.id WHERE p.id = ANY(%s) GROUP BY 1",
            (posts,),
        )
    )
    voted = {
        p for (p,) in sql("SELECT DISTINCT post_id FROM votes WHERE post_id = ANY(%s)", (posts,))
    }
    post_stats = dict(
        sql("SELECT post_id, score FROM post_stats WHERE post_id = ANY(%s)", (posts,))
    )
    email_changes = dict(
        sql(
            "SELECT id, split_part(split_part(email, '+', 2), '@', 1)::int FROM users "
            "WHERE id = ANY(%s)",
            (users,),
        )
    )
    notified = Counter(
        {
            (u, k): n
            for u, k, n in sql(
                "SELECT user_id, kind, count(*) FROM notifications WHERE user_id = ANY(%s) "
                "GROUP BY 1, 2",
                (users,),
            )
        }
    )
    # A comment notifies the post's author unless they wrote it themselves.
    comment_notes = dict(
        sql(
            "SELECT p.author_id, count(*) FROM comments c JOIN posts p ON p.id = c.post_id "
            "WHERE p.id = ANY(%s) AND c.author_id <> p.author_id GROUP BY 1",
            (posts,),
        )
    )
    titles = dict(sql("SELECT id, title FROM posts WHERE id = ANY(%s)", (posts,)))
    reviews = dict(
        sql(
            "SELECT post_id, verdict || (published_at IS NOT NULL)::text FROM post_reviews "
            "WHERE post_id = ANY(%s)",
            (posts,),
        )
    )
    audited = Counter(
        {
            (t, int(k)): n
            for t, k, n in sql(
                "SELECT table_name, row_key->>'id', count(*) FROM audit_log "
                "WHERE (table_name = 'public.users' AND (row_key->>'id')::bigint = ANY(%s)) "
                "OR (table_name = 'public.posts' AND (row_key->>'id')::bigint = ANY(%s)) "
                "GROUP BY 1, 2",
                (users, posts),
            )
        }
    )
    ledger = sql(
        "SELECT count(*), count(DISTINCT change_key) FROM cdc_processed_changes "
        "WHERE handler = 'handlers.comments.count_comments' AND "
        "(substring(change_key FROM '/c/(.*)$')::jsonb->>'id')::bigint IN "
        "(SELECT id FROM comments WHERE author_id = ANY(%s))",
        (users,),
    )[0]

    mismatches: list[str] = []

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            mismatches.append(f"{what}: {actual!r} != {wanted!r}")

    for u in users:
        expect(
            f"user {u} (posts, comments)", stats.get(u), (posts_by.get(u, 0), comments_by.get(u, 0))
        )
        expect(f"user {u} welcome", notified[(u, "welcome")], 1)
        expect(f"user {u} email_changed", notified[(u, "email_changed")], email_changes[u])
        expect(f"user {u} comment notes", notified[(u, "comment")], comment_notes.get(u, 0))
        expect(f"user {u} audit rows", audited[("public.users", u)], 1 + email_changes[u])
    for p in posts:
        # A post whose votes were all withdrawn keeps a score of 0 (or none if never voted).
        score = post_stats.get(p)
        expect(
            f"post {p} score", score, scores[p] if p in voted else (None if score is None else 0)
        )
        rejected = any(word in titles[p].lower() for word in BANNED)
        expect(f"post {p} review", reviews.get(p), "rejectedfalse" if rejected else "approvedtrue")
        expect(f"post {p} audit rows", audited[("public.posts", p)], 1)
    published = sum(1 for u in users for _ in range(notified[(u, "published")]))
    rejections = sum(notified[(u, "rejected")] for u in users)
    expect("published notes", published, sum(1 for v in reviews.values() if v == "approvedtrue"))
    expect("rejection notes", rejections, sum(1 for v in reviews.values() if v == "rejectedfalse"))
    total_comments = sum(comments_by.values())
    expect("ledger rows (count_comments)", ledger, (total_comments, total_comments))
    return {
        "comments": total_comments,
        "comments_counted": sum(c for _, c in stats.values()),
        "posts": len(posts),
        "votes_live": int(
            sql("SELECT count(*) FROM votes WHERE post_id = ANY(%s)", (posts,))[0][0]
        ),
        "email_changes": sum(email_changes.values()),
        "notifications": sum(notified.values()),
        "audit_rows": sum(audited.values()),
        "mismatches": mismatches,
    }


def source_changes(app: ExampleApp) -> int:
    """Changes Debezium captured for the app's tables: the records in its topics (deletes'
    tombstones not counted)."""
    settings = app.pipeline.settings
    group = Consumer(settings.kafka_config(**{"group.id": f"{app.pipeline.id}-count"}))  # type: ignore[arg-type]
    try:
        total = 0
        for topic in app.topics:
            meta = group.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                low, high = group.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        group.close()


def settle(app: ExampleApp, timeout: float) -> dict[str, Any]:
    """Wait until the effects match the source rows; return the last comparison."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = effects(app)
        except psycopg.OperationalError:  # the database is restarting
            time.sleep(1)
            continue
        if not found["mismatches"] or time.monotonic() > deadline:
            return found
        time.sleep(2)


def task_running(connect: ConnectClient, name: str) -> bool:
    try:
        tasks = connect.status(name)["tasks"]
    except Exception:  # Connect is still rejoining its group
        return False
    return bool(tasks) and tasks[0]["state"] == "RUNNING"


def finish(app: ExampleApp, writer: Writer, runs: list[CdcRun], timeout: float) -> dict[str, Any]:
    """Stop writing, wait until the effects match the source rows, stop the consumers with
    SIGTERM (exit 0) and check the group committed everything."""
    writer.stop()
    found = settle(app, timeout)
    assert not found["mismatches"], found["mismatches"][:20]
    for run in runs:
        eventually(run.ready, what="the consumer ready")
    # What the last killed run did but never committed is read again and skipped as done.
    eventually(lambda: group_lag(app) == 0, what="every record committed", timeout=timeout)
    for run in runs:
        assert run.stop() == 0, run.tail()
    return found
