"""``cdc check`` on partitioned tables: the parent is watched, its changes published through
it, and every partition has the replica identity the file declares for the parent."""

from __future__ import annotations

from collections.abc import Mapping

from cdc.findings import Finding, Severity, apply_fix
from cdc.tables.config import ReplicaIdentity, WatchedTables
from cdc.tables.live import LiveTable, partition_watched_twice, watched_ancestor

# pg_class.relreplident; the names are what ALTER TABLE ... REPLICA IDENTITY takes.
IDENTITY_NAMES = {"d": "DEFAULT", "f": "FULL", "n": "NOTHING", "i": "INDEX"}


def identity_name(relreplident: str) -> str:
    return IDENTITY_NAMES.get(relreplident, repr(relreplident))


def off_identity(table: LiveTable, wanted: ReplicaIdentity) -> list[str]:
    """The table's partitions whose replica identity is not ``wanted``, with theirs."""
    return [
        f"{schema}.{name} ({identity_name(identity)})"
        for (schema, name), identity in table.partitions.items()
        if identity_name(identity) != wanted.name
    ]


def through_parents(
    published: frozenset[str] | None, tables: Mapping[str, LiveTable]
) -> frozenset[str] | None:
    """The published tables, a watched parent's partitions named as the parent: without
    publish_via_partition_root PostgreSQL lists the partitions (`partition_findings` says so)."""
    if published is None:
        return None
    parent = {f"{s}.{t}": name for name, table in tables.items() for (s, t) in table.partitions}
    return frozenset(parent.get(p, p) for p in published)


def partition_findings(
    watched: WatchedTables, tables: Mapping[str, LiveTable], via_root: bool, file: str
) -> list[Finding]:
    findings = []
    for name, options in watched.tables.items():
        table = tables.get(name)
        if table is None:
            continue  # reported as missing
        wanted = options.replica_identity
        off = off_identity(table, wanted)
        if off:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    f"partition(s) {', '.join(off)} lack the replica identity {wanted.name} "
                    f"{file} declares (PostgreSQL gives a partition its own, DEFAULT when made)",
                    f"{apply_fix(file)} (it sets every partition's), and give partitions you "
                    f"create later REPLICA IDENTITY {wanted.name} in the migration making them",
                )
            )
        ancestor = watched_ancestor(name, table, watched.tables)
        if ancestor is not None:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    partition_watched_twice(ancestor),
                    f"remove `{name}` from `tables:` in {file} (watching {ancestor} captures "
                    f"it), then {apply_fix(file)}",
                )
            )
        elif table.ancestors:
            root = table.ancestors[-1]
            findings.append(
                Finding(
                    Severity.WARNING,
                    name,
                    f"a partition of {root}: only the rows it holds are captured, on its own "
                    f"topic, and rows that move to another partition are seen as deleted",
                    f"watch {root} instead (every partition, those made later too, on "
                    f"{root}'s topic): replace `{name}` under `tables:` in {file}, "
                    f"then {apply_fix(file)}",
                )
            )
    partitioned = sorted(n for n, t in tables.items() if t.partitioned and n in watched.tables)
    if partitioned and not via_root:
        findings.append(
            Finding(
                Severity.ERROR,
                f"publication {watched.connector.publication}",
                "publish_via_partition_root is off, so the changes of "
                f"{', '.join(partitioned)} are published under their partitions' names, "
                "which Debezium does not watch: they are lost",
                f"{apply_fix(file)} (it sets publish_via_partition_root = true)",
            )
        )
    return findings
