"""The consumer's own histogram exposes what prometheus_client's would for the same
observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from cdc.runtime.metrics import PlainHistogram

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def test_plain_histogram_exposes_what_prometheus_client_does() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram(
        "x_seconds", "Doc.", ["handler", "table"], buckets=BUCKETS, registry=theirs
    )
    plain = PlainHistogram("x_seconds", "Doc.", ["handler", "table"], BUCKETS, ours)
    # Below, on and above bucket bounds, past the last one, in two series.
    amounts = [0.0, 0.0001, 0.0005, 0.0006, 0.001, 0.3, 1, 2.5, 9.99, 10, 11, 3600]
    for labels in (("h", "public.a"), ("h", "public.b")):
        for amount in amounts[: 6 if labels[1] == "public.b" else None]:
            reference.labels(*labels).observe(amount)
            plain.observe(labels, amount)
    expected = [
        line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line
    ]
    assert generate_latest(ours).decode().splitlines() == expected


def test_observations_in_bulk_count_as_one_by_one() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("x_seconds", "Doc.", ["table"], buckets=BUCKETS, registry=theirs)
    plain = PlainHistogram("x_seconds", "Doc.", ["table"], BUCKETS, ours)
    # Series interleaved and in runs, on and off the first bound, a negative amount (as 0).
    observed = [
        (("a",), 0.0001),
        (("a",), 0.0005),
        (("b",), 0.0006),
        (("a",), -0.5),
        (("b",), 12.0),
        (("b",), 0.0),
        (("a",), 0.3),
    ]
    for labels, amount in observed:
        reference.labels(*labels).observe(max(0.0, amount))
    plain.observe_all(observed)
    expected = [
        line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line
    ]
    assert generate_latest(ours).decode().splitlines() == expected
