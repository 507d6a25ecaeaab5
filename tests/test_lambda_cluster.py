"""LambdaCluster end to end on a local AWS-compatible endpoint, and on AWS when asked.

The endpoint runs Lambda with real Python handlers, S3, SQS, IAM and the tagging API. After
the ``with`` block, the AWS API itself must show that nothing of the cluster remains.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import operator
import os
import subprocess
import sys
import textwrap
import threading
import time

import boto3
import dask
import dask.array as da
import dask.bag as db
import pytest
from dask import delayed
from dask.diagnostics import ProgressBar

import dask_serverless
from aws_endpoint import CREDENTIALS, aws_endpoint
from browser_page import LoadedPage
from dask_serverless import LambdaCluster, lambda_cluster
from dask_serverless.errors import AwsConfigurationError, PlatformError
from dask_serverless.lambda_cluster import _duration_text, _LastSeenRenewal, cleanup
from dask_serverless.report_page import duration_text
from report_checks import check_bill_by_hand

# The endpoint runs handlers with its own interpreter, this machine's Python.
ENDPOINT_PYTHON = "3.11"
LAST_SEEN_TAG = "dask-serverless:last-seen"


@pytest.fixture(scope="module")
def endpoint():
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        with aws_endpoint() as url:
            yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def client(service, url):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1")


def remaining_resources(url: str, cluster_id: str) -> list[str]:
    found = []
    for function in client("lambda", url).list_functions()["Functions"]:
        if cluster_id in function["FunctionName"]:
            found.append(function["FunctionArn"])
    for queue in client("sqs", url).list_queues().get("QueueUrls", []):
        if cluster_id in queue:
            found.append(queue)
    for bucket in client("s3", url).list_buckets()["Buckets"]:
        if cluster_id in bucket["Name"]:
            found.append(bucket["Name"])
    for role in client("iam", url).list_roles()["Roles"]:
        if cluster_id in role["RoleName"]:
            found.append(role["Arn"])
    for group in client("logs", url).describe_log_groups()["logGroups"]:
        if cluster_id in group["logGroupName"]:
            found.append(group["logGroupName"])
    tagged = client("resourcegroupstaggingapi", url).get_resources(
        TagFilters=[{"Key": "dask-serverless:cluster", "Values": [cluster_id]}]
    )
    found += [mapping["ResourceARN"] for mapping in tagged["ResourceTagMappingList"]]
    return found


def tree_sum(count):
    values = [delayed(i) for i in range(count)]
    while len(values) > 1:
        values = [
            delayed(operator.add)(a, b) for a, b in zip(values[::2], values[1::2], strict=True)
        ]
    return values[0]


def test_demo_and_tree_reduction_then_nothing_remains(endpoint):
    x = da.random.RandomState(42).random((2000, 2000), chunks=(500, 500))
    total = tree_sum(1024)
    with LambdaCluster(
        region="us-east-1",
        endpoint_url=endpoint,
        memory_mb=1024,
        timeout_s=120,
        parallelism=4,
        python_version=ENDPOINT_PYTHON,
    ) as cluster:
        cluster_id = cluster.cluster_id
        assert remaining_resources(endpoint, cluster_id), "the cluster created nothing"
        assert x.mean().compute() == x.mean().compute(scheduler="sync")
        assert total.compute() == sum(range(1024))
        # Every function hashes strings alike (Dask partitions by hash()).
        configuration = client("lambda", endpoint).get_function_configuration(
            FunctionName=cluster.deployment["function_name"]
        )
        assert configuration["Environment"]["Variables"]["PYTHONHASHSEED"].isdigit()
        words = db.from_sequence([f"w{n % 29}" for n in range(600)], npartitions=12)
        assert len(set(words.map(lambda w: (w, hash(w) % 4)).compute())) == 29
        counted = words.groupby(lambda w: w).map(lambda kv: (kv[0], len(kv[1])))
        assert sorted(counted.compute()) == sorted(counted.compute(scheduler="sync"))
        # A task's exception crosses intact, and the cluster stays usable.
        with pytest.raises(ZeroDivisionError):
            delayed(operator.truediv)(1, 0).compute()
        assert dask.compute(total, scheduler=cluster.get)[0] == sum(range(1024))
        # The function's log group exists since its first invocation.
        log_group = f"/aws/lambda/{cluster.deployment['function_name']}"
        assert log_group in remaining_resources(endpoint, cluster_id)
    assert remaining_resources(endpoint, cluster_id) == []


def test_get_logs_reads_each_invocations_output_from_the_log_group(endpoint):
    def shout(number):
        import sys

        print(f"task {number} says hello on stdout")
        print(f"task {number} says hello on stderr", file=sys.stderr)
        return number + 1

    with LambdaCluster(
        region="us-east-1",
        endpoint_url=endpoint,
        memory_mb=512,
        timeout_s=60,
        parallelism=2,
        python_version=ENDPOINT_PYTHON,
    ) as cluster:
        assert len(cluster.get_logs()) == 0, "no compute yet, no logs"
        values = [delayed(shout)(number) for number in range(4)]
        assert dask.compute(*values) == (1, 2, 3, 4)
        logs = cluster.get_logs()
        tasks = cluster.last_run.tasks.set_index("key")
        for number, value in enumerate(values):
            invocation = tasks.loc[str(value.key), "invocation"]
            text = logs[invocation]
            assert f"task {number} says hello on stdout\n" in text, repr(logs)
            assert f"task {number} says hello on stderr\n" in text, repr(logs)
            assert f"REPORT RequestId: {invocation}" in text, repr(logs)
            # Elsewhere only if a backup ran it too (a batch waiting for a cold start while
            # its siblings finish on a warm instance can get one).
            others = [other for other in logs if other != invocation]
            again = [other for other in others if f"task {number} says" in logs[other]]
            assert len(again) <= cluster.last_run["backups"], repr(logs)
        assert set(cluster.last_run.invocations["invocation"]) <= set(logs)
        # Only the latest compute's invocations.
        assert dask.compute(delayed(sum)([1, 2]))[0] == 3
        latest = cluster.get_logs()
        assert len(latest) > 0
        assert not any("says hello" in text for text in latest.values()), repr(latest)
        log_group = f"/aws/lambda/{cluster.deployment['function_name']}"
        cluster_id = cluster.cluster_id
        assert log_group in remaining_resources(endpoint, cluster_id)
    # Closing deleted the log group with everything else.
    assert remaining_resources(endpoint, cluster_id) == []


START_STEPS = [
    "connecting",
    "building the package",
    "checking credentials",
    "creating the role",
    "creating the bucket",
    "uploading the package",
    "creating the queue",
    "creating the function",
    "waiting for the function to be active",
    "first cold start",
]


def start_lines(text: str, cluster_id: str) -> list[str]:
    prefix = f"LambdaCluster {cluster_id}: "
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


def test_a_compute_end_to_end_start_progress_report_cost_logs_and_page(
    endpoint, browser, tmp_path, capfd
):
    """What a user sees of one compute on LambdaCluster: the start's progress, Dask's
    ProgressBar, the run report with its bill, the functions' logs and the HTML page."""
    x = da.random.RandomState(7).random((600, 600), chunks=(200, 200))
    total = (x @ x.T).sum()
    expected = total.compute(scheduler="sync")
    with LambdaCluster(
        region="us-east-1",
        endpoint_url=endpoint,
        memory_mb=1024,
        timeout_s=60,
        parallelism=3,
        python_version=ENDPOINT_PYTHON,
    ) as cluster:
        shown = start_lines(capfd.readouterr().err, cluster.cluster_id)
        steps = [line.split(" (")[0] for line in shown[:-1]]
        assert steps == START_STEPS, shown
        size = cluster.package.zipped_bytes / 1e6
        assert f"uploading the package ({size:.1f} MB)" in shown
        assert shown[-1].startswith(f"ready ({size:.1f} MB package, first cold start ")
        assert shown[-1].endswith(" s") and " in " in shown[-1]
        assert 0 < cluster.first_cold_start_s < 60
        bar = io.StringIO()
        page = tmp_path / "run.html"
        with dask_serverless.performance_report(page), ProgressBar(out=bar, dt=0.05):
            assert total.compute() == pytest.approx(expected)
        assert "100% Completed" in bar.getvalue()

        report = cluster.last_run
        assert report.succeeded
        tasks = report.tasks
        # Every task of Dask's optimized graph ran (the output's under Dask's finalize key).
        (optimized,) = dask.optimize(total)
        graph = optimized.__dask_graph__()
        assert {str(key) for key in graph if key not in optimized.__dask_keys__()} <= set(
            tasks["key"]
        )
        assert len(tasks) == report["tasks"] >= len(graph)
        invocations = report.invocations
        # Every invocation reported, but a backup's loser still running when the run ended.
        made = report["invocations"]
        assert made - report["backups"] <= len(invocations) <= made and made >= 3
        assert set(tasks["invocation"]) <= set(invocations["invocation"])
        assert invocations["instance"].notna().all() and (invocations["duration_s"] > 0).all()
        assert (invocations["peak_memory_bytes"] > 0).all()
        check_bill_by_hand(report, cluster.memory_mb)
        assert "as if on AWS Lambda" in repr(report.cost)

        logs = cluster.get_logs()
        for invocation in invocations["invocation"]:
            assert f"REPORT RequestId: {invocation}" in logs[invocation], repr(logs)

        loaded = LoadedPage(browser, page)
        try:
            assert loaded.errors == []
            assert loaded.model_length("tasks-1") == len(tasks)
            longest = tasks.loc[tasks["duration_s"].idxmax()]
            tooltip = loaded.hover_glyph("task-stream-1", "tasks-1", longest["key"])
            assert longest["key"] in tooltip
            assert duration_text(longest["duration_s"]) in tooltip
            assert report.run_id in loaded.page.inner_text("body")
        finally:
            loaded.close()
        cluster_id = cluster.cluster_id
    assert remaining_resources(endpoint, cluster_id) == []


def test_reserved_concurrency_below_the_ready_batches_makes_them_wait_not_fail(endpoint):
    """The endpoint refuses events over the reserved concurrency with a failure record (Lambda
    would keep them and try again): the client invokes them again, nothing is lost or redone."""
    x = da.random.RandomState(7).random((600, 600), chunks=(200, 200))
    total = (x @ x.T).sum()
    expected = total.compute(scheduler="sync")
    with LambdaCluster(
        region="us-east-1",
        endpoint_url=endpoint,
        memory_mb=512,
        timeout_s=60,
        max_concurrency=2,
        python_version=ENDPOINT_PYTHON,
        progress=False,
    ) as cluster:
        configuration = client("lambda", endpoint).get_function_concurrency(
            FunctionName=cluster.deployment["function_name"]
        )
        assert configuration["ReservedConcurrentExecutions"] == 2
        assert total.compute() == pytest.approx(expected)
        report = cluster.last_run
        assert report["throttled_events"] > 0, report
        assert report["recoveries"] == 0, report
        assert "throttled events invoked again" in repr(report)


def test_a_start_without_progress_shows_nothing_and_a_broken_function_fails_at_start(
    endpoint, monkeypatch, capfd
):
    monkeypatch.setattr(lambda_cluster, "HANDLER", "dask_serverless.no_such_module.handler")
    cluster = LambdaCluster(
        region="us-east-1",
        endpoint_url=endpoint,
        memory_mb=512,
        timeout_s=30,
        python_version=ENDPOINT_PYTHON,
        progress=False,
    )
    with pytest.raises(PlatformError, match="cannot run: its first invocation failed") as raised:
        cluster.start()
    assert "no_such_module" in str(raised.value)
    assert "requirements" in str(raised.value)
    assert start_lines(capfd.readouterr().err, cluster.cluster_id) == []
    assert not cluster.running
    assert remaining_resources(endpoint, cluster.cluster_id) == []


CTRL_C_SCRIPT = """
import json, os, signal, threading, time
from dask import delayed
from dask.diagnostics import ProgressBar
from dask_serverless import LambdaCluster

MARKERS = os.environ["TEST_MARKERS"]

def step(previous, chain, index):
    # Each task leaves a marker, named after it, holding when it started.
    with open(os.path.join(MARKERS, f"{chain}-{index}"), "w") as marker:
        marker.write(repr(time.time()))
    time.sleep(0.3)
    return previous + 1

def markers():
    return {name: float(open(os.path.join(MARKERS, name)).read()) for name in os.listdir(MARKERS)}

def run_objects(cluster):
    return [key for key in cluster._store.list("") if not key.startswith("deployment/")]

with LambdaCluster(
    region="us-east-1",
    endpoint_url=os.environ["TEST_ENDPOINT"],
    parallelism=4,
    batches_per_function=2,
    timeout_s=120,
    python_version=os.environ["TEST_PYTHON"],
) as cluster:
    chains = []
    for chain in range(4):
        value = 0
        for index in range(40):
            value = delayed(step)(value, chain, index, dask_key_name=f"step-{chain}-{index}")
        chains.append(value)
    total = delayed(sum)(chains)
    signalled = []
    def interrupt():
        # Once every chain runs (functions start cold), and a second later: mid-chain.
        deadline = time.monotonic() + 60
        while len({name.split("-")[0] for name in os.listdir(MARKERS)}) < 4:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        signalled.append(time.time())
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    report = {}
    try:
        total.compute()
        report["outcome"] = "completed"
    except KeyboardInterrupt:
        report["outcome"] = "interrupted"
    report["raised_after"] = time.time() - signalled[0]
    report["signalled"] = signalled[0]
    report["objects_at_once"] = run_objects(cluster)
    # Functions look at the lease once a second of their tasks: give them time to stop, and
    # any that did not to start more tasks.
    time.sleep(5.0)
    report["markers"] = markers()
    report["objects_later"] = run_objects(cluster)
    report["next_compute"] = delayed(sum)([delayed(abs)(-n) for n in range(5)]).compute()
    report["objects_after_next_compute"] = run_objects(cluster)
    time.sleep(2.0)
    report["markers_at_the_end"] = len(markers())
print("REPORT", json.dumps(report))
"""


def test_ctrl_c_stops_the_functions_at_their_next_task_boundary_and_deletes_the_run(
    endpoint, tmp_path
):
    markers = tmp_path / "markers"
    markers.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CTRL_C_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=240,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TEST_ENDPOINT": endpoint,
            "TEST_MARKERS": str(markers),
            "TEST_PYTHON": ENDPOINT_PYTHON,
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("REPORT ", 1)[1])
    assert report["outcome"] == "interrupted", report
    # The compute raised promptly: the client stops the run without waiting for functions.
    assert report["raised_after"] < 3.0, report["raised_after"]
    started = report["markers"]
    before = [name for name, at in started.items() if at <= report["signalled"]]
    # Four chains ran side by side: every chain had started, none was near its end.
    assert {name.split("-")[0] for name in before} == {"0", "1", "2", "3"}, json.dumps(report)
    assert len(before) < 4 * 40 / 2, len(before)
    # A function looks at the lease between tasks, once a second of its tasks: after the
    # Ctrl-C a chain starts at most the tasks of that second and the one running (0.3 s
    # each), then stops.
    latest = max(started.values())
    assert latest - report["signalled"] < 2.0, latest - report["signalled"]
    late = [name for name, at in started.items() if at > report["signalled"]]
    print(
        f"raised {report['raised_after']:.2f} s after the SIGINT; {len(before)} tasks had "
        f"started, {len(late)} started after, the last {latest - report['signalled']:.2f} s after"
    )
    assert len(late) <= 4 * 5, sorted(late)
    # And they stay stopped.
    assert report["markers_at_the_end"] == len(started)
    # The run's objects are gone; the cluster computes again and leaves nothing either.
    assert report["objects_later"] == [], report["objects_later"]
    assert report["next_compute"] == 10
    assert report["objects_after_next_compute"] == []


def last_seen(url: str, cluster: LambdaCluster) -> int | None:
    """The last-seen mark of the cluster's function, in Unix seconds."""
    assert cluster.deployment is not None
    tags = client("lambda", url).list_tags(Resource=cluster.deployment["function_arn"])["Tags"]
    return int(tags[LAST_SEEN_TAG]) if LAST_SEEN_TAG in tags else None


def renewal_threads() -> list[str]:
    return [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith("dask-serverless-last-seen-")
    ]


def test_cleanup_spares_a_cluster_seen_recently_and_deletes_it_when_told(endpoint):
    cluster = LambdaCluster(
        region="us-east-1", endpoint_url=endpoint, parallelism=2, python_version=ENDPOINT_PYTHON
    )
    cluster.start()
    cluster_id = cluster.cluster_id
    # A compute: the function's log group exists.
    assert delayed(operator.add)(1, 2).compute(scheduler=cluster.get) == 3
    log_group = f"/aws/lambda/dask-serverless-{cluster_id}"
    # Simulate a client that died a moment ago without closing: no more renewals, no
    # finalizer.
    assert cluster._renewal is not None
    cluster._renewal.stop()
    cluster._finalizer.detach()
    assert remaining_resources(endpoint, cluster_id)

    report = cleanup(region="us-east-1", endpoint_url=endpoint, cluster_id=cluster_id)
    assert report.deleted == []
    assert list(report.skipped) == [cluster_id]
    assert 0 <= report.skipped[cluster_id] < 60
    assert len(report.skipped_reasons) == 1
    assert report.skipped_reasons[0].startswith(
        f"skipped cluster {cluster_id}: its client was seen "
    )
    assert report.skipped_reasons[0].endswith(
        "ago, less than older_than='15m'; pass older_than=0 to delete it anyway"
    )
    assert str(report) == report.skipped_reasons[0]
    assert remaining_resources(endpoint, cluster_id)

    dry_run = cleanup(
        region="us-east-1", endpoint_url=endpoint, cluster_id=cluster_id, dry_run=True, older_than=0
    )
    assert dry_run.dry_run and dry_run.skipped == {}
    assert f"function dask-serverless-{cluster_id}" in dry_run.deleted
    assert f"log group {log_group}" in dry_run.deleted
    assert f"would delete function dask-serverless-{cluster_id}" in str(dry_run).splitlines()
    assert log_group in remaining_resources(endpoint, cluster_id)

    report = cleanup(
        region="us-east-1",
        endpoint_url=endpoint,
        cluster_id=cluster_id,
        older_than=datetime.timedelta(0),
    )
    assert f"function dask-serverless-{cluster_id}" in report.deleted
    assert f"log group {log_group}" in report.deleted
    assert report.skipped == {}
    assert remaining_resources(endpoint, cluster_id) == []
    assert str(cleanup(region="us-east-1", endpoint_url=endpoint)) == "nothing to delete"


def test_an_open_cluster_renews_its_last_seen_mark_until_it_closes(endpoint, monkeypatch):
    monkeypatch.setattr(lambda_cluster, "RENEWAL_PERIOD_S", 0.2)
    cluster = LambdaCluster(
        region="us-east-1", endpoint_url=endpoint, parallelism=2, python_version=ENDPOINT_PYTHON
    )
    with cluster:
        assert renewal_threads() == [f"dask-serverless-last-seen-{cluster.cluster_id}"]
        mark = last_seen(endpoint, cluster)
        assert mark is not None and abs(mark - time.time()) < 60
        # Made to look dead an hour ago, the cluster is seen again at the next renewal.
        an_hour_ago = int(time.time()) - 3600
        client("lambda", endpoint).tag_resource(
            Resource=cluster.deployment["function_arn"], Tags={LAST_SEEN_TAG: str(an_hour_ago)}
        )
        deadline = time.monotonic() + 10
        while last_seen(endpoint, cluster) == an_hour_ago and time.monotonic() < deadline:
            time.sleep(0.05)
        mark = last_seen(endpoint, cluster)
        assert mark is not None and mark > an_hour_ago + 3000, "the mark was not renewed"
        report = cleanup(region="us-east-1", endpoint_url=endpoint, older_than="30m")
        assert list(report.skipped) == [cluster.cluster_id]
        assert report.deleted == []
        renewal = cluster._renewal
        assert renewal is not None and renewal.running
    assert not renewal.running
    assert renewal_threads() == []
    assert remaining_resources(endpoint, cluster.cluster_id) == []


def test_cleanup_refuses_a_duration_it_cannot_read(endpoint):
    with pytest.raises(AwsConfigurationError, match="invalid duration '15'"):
        cleanup(region="us-east-1", endpoint_url=endpoint, older_than="15")


class FailingDeployer:
    """Stands for the native deployer: counts renewals, failing them all."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = threading.Event()

    def mark_seen(self, record: str) -> None:
        self.calls += 1
        if self.calls >= 3:
            self.called.set()
        raise ConnectionError("the endpoint is unreachable")


def test_a_failed_renewal_is_logged_and_tried_again(caplog):
    deployer = FailingDeployer()
    with caplog.at_level(logging.WARNING, logger="dask_serverless.lambda_cluster"):
        renewal = _LastSeenRenewal(deployer, "{}", "ds-test", 0.01)
        try:
            assert deployer.called.wait(10), "no third renewal"
            assert renewal.running
        finally:
            renewal.stop()
    assert not renewal.running
    calls = deployer.calls
    time.sleep(0.05)
    assert deployer.calls == calls, "renewals went on after stop()"
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) >= 3
    assert messages[0].startswith(
        "could not renew the last-seen mark of cluster ds-test (ConnectionError: the endpoint "
        "is unreachable); trying again in 0.01 s."
    )


def test_durations_cross_to_the_native_cleanup_as_text():
    assert _duration_text(None) is None
    assert _duration_text("2h") == "2h"
    assert _duration_text(0) == "0s"
    assert _duration_text(90) == "90s"
    assert _duration_text(0.2) == "1s"
    assert _duration_text(datetime.timedelta(minutes=30)) == "1800s"
    with pytest.raises(ValueError, match="non-negative"):
        _duration_text(-1)
    with pytest.raises(ValueError, match="non-negative"):
        _duration_text(float("inf"))
    with pytest.raises(TypeError, match="not bool"):
        _duration_text(True)


def test_endpoint_that_does_not_answer_is_clear():
    from aws_endpoint import free_port

    with pytest.raises(ConnectionError, match="127.0.0.1"):
        LambdaCluster(region="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}").start()


@pytest.mark.skipif(
    os.environ.get("DASK_SERVERLESS_TEST_AWS") != "1",
    reason="real AWS: set DASK_SERVERLESS_TEST_AWS=1 with credentials to run",
)
def test_real_aws():
    x = da.random.RandomState(42).random((2000, 2000), chunks=(500, 500))
    with LambdaCluster(memory_mb=2048, timeout_s=120, python_version="3.12") as cluster:
        assert x.mean().compute() == x.mean().compute(scheduler="sync")
        cluster_id = cluster.cluster_id
    report = cleanup(cluster_id=cluster_id, dry_run=True, older_than=0)
    assert report.deleted == [] and report.skipped == {}
