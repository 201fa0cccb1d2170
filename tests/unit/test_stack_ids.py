"""Identifiers the local stack generates."""

from __future__ import annotations

import base64

from cdc.stack.local import kafka_cluster_id


def test_kafka_cluster_ids_are_16_bytes_and_never_look_like_options() -> None:
    ids = [kafka_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
