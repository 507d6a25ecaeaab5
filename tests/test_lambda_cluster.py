"""LambdaCluster end to end on a local AWS-compatible endpoint, and on AWS when asked.

The endpoint runs Lambda with real Python handlers, S3, SQS, IAM and the tagging API. After
the ``with`` block, the AWS API itself must show that nothing of the cluster remains.
"""

from __future__ import annotations

import operator
import os

import boto3
import dask
import dask.array as da
import dask.bag as db
import pytest
from dask import delayed

from aws_endpoint import CREDENTIALS, aws_endpoint
from dask_serverless import LambdaCluster
from dask_serverless.lambda_cluster import cleanup

# The endpoint runs handlers with its own interpreter, this machine's Python.
ENDPOINT_PYTHON = "3.11"


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
    assert remaining_resources(endpoint, cluster_id) == []


def test_cleanup_removes_leftovers_by_tag(endpoint):
    cluster = LambdaCluster(
        region="us-east-1", endpoint_url=endpoint, parallelism=2, python_version=ENDPOINT_PYTHON
    )
    cluster.start()
    cluster_id = cluster.cluster_id
    # Simulate a client that died without closing: forget the finalizer.
    cluster._finalizer.detach()
    assert remaining_resources(endpoint, cluster_id)
    deleted = cleanup(region="us-east-1", endpoint_url=endpoint, cluster_id=cluster_id)
    assert deleted
    assert remaining_resources(endpoint, cluster_id) == []


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
    assert cleanup(cluster_id=cluster_id, dry_run=True) == []
