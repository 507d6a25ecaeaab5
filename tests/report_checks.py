"""Checks of a run report that more than one test module makes."""

from __future__ import annotations

import math

import pandas as pd
import pytest


def check_bill_by_hand(report, memory_mb: int) -> None:
    """The report's bill equals the one recomputed here, from its records and AWS's prices of
    us-east-1, x86_64: $0.0000166667 per GB-second, $0.20 per million requests; S3 PUT $0.005
    and GET $0.0004 per thousand; SQS $0.40 per million requests."""
    invocations = report.invocations
    gigabytes = memory_mb / 1024
    billed_ms = 0
    for row in invocations.itertuples():
        init = 0.0 if pd.isna(row.init_s) else row.init_s
        billed_ms += math.ceil((row.duration_s + init) * 1000)
    compute = billed_ms / 1000 * gigabytes * 0.0000166667
    requests = report["invocations"] * 0.20 / 1_000_000
    client = report._records["client_store"]
    reads = invocations["store_reads"].sum() + client["reads"]
    writes = invocations["store_writes"].sum() + client["writes"]
    fan_ins = invocations["store_fan_ins"].sum() + client["fan_ins"]
    store = reads * 0.0004 / 1000 + (writes + 3 * fan_ins) * 0.005 / 1000
    queue = (invocations["messages_sent"].sum() + report["channel_receives"]) * 0.40 / 1_000_000
    cost = report.cost
    assert cost.items["lambda_compute"] == pytest.approx(compute, rel=1e-9)
    assert cost.items["lambda_requests"] == pytest.approx(requests, rel=1e-9)
    assert cost.items["store_requests"] == pytest.approx(store, rel=1e-9)
    assert cost.items["queue_requests"] == pytest.approx(queue, rel=1e-9)
    assert cost.total == pytest.approx(compute + requests + store + queue, rel=1e-9)
    assert cost.total > 0
