"""``LambdaCluster``: Dask computations on AWS Lambda, paid only while they run.

``with LambdaCluster(region=...):`` builds the deployment package, then creates — all tagged
with the cluster's id — an IAM role, an S3 bucket (data and fan-in), an SQS queue (the result
channel and the on-failure destination of asynchronous invocations) and the Lambda function.
Every compute inside the block reuses them (warm functions stay warm); on exit, also after an
exception or Ctrl-C, everything is deleted. ``dask-serverless cleanup --region R`` finds and
deletes leftovers by tag.

Credentials and region come the standard AWS way (environment, profile, SSO). With
``endpoint_url`` every call goes to an AWS-compatible endpoint instead.
"""

from __future__ import annotations

import json
import uuid
import weakref
from typing import Any
from urllib.parse import urlencode, urlparse

from dask_serverless import _core
from dask_serverless._base import ServerlessCluster, hash_seed
from dask_serverless._validate import check_integer, check_number, renamed_keywords
from dask_serverless.errors import ConfigurationError
from dask_serverless.packaging import build_package

HANDLER = "dask_serverless.handler.handler"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class LambdaCluster(ServerlessCluster):
    """Run Dask computations on AWS Lambda.

    Parameters
    ----------
    region, profile, endpoint_url:
        Where to deploy; defaults come from the standard AWS configuration.
    memory_mb, timeout_s:
        Memory size (128 to 10240) and timeout (at most 900) of the function.
    max_concurrency:
        Reserved concurrency of the function: at most this many run at once (default: none
        reserved, the account's limit applies).
    requirements:
        Extra pip requirements the tasks need (``pandas``, ``scikit-learn``...), on top of the
        client's own versions of dask, cloudpickle and numpy.
    architecture, python_version:
        ``x86_64`` or ``arm64``; the Lambda Python runtime (3.11, 3.12, 3.13). Recent NumPy
        wheels need glibc 2.28, which Lambda has from python3.12 on (the default).
    wheel:
        A dask-serverless wheel built for Lambda (manylinux); by default the installed package.
    store:
        ``None`` for the cluster's S3 bucket, or a ``redis://host:port`` address the functions
        can reach (faster fan-in and small values).
    parallelism, batches_per_function:
        How the planner cuts graphs: about ``parallelism * batches_per_function`` batches of
        tasks, each run by one invocation (``parallelism`` defaults to ``max_concurrency``,
        else 64). ``clusters_per_worker`` is the former name of ``batches_per_function``
        (still accepted, with a ``FutureWarning``).
    chaos, chaos_seed:
        A testing aid, as on ``LocalCluster``: faults to inject and their seed. The spec
        travels in each run's invocation events, so the deployed functions need no change;
        the client wraps its own invoker and store.
    """

    def __init__(
        self,
        region: str | None = None,
        memory_mb: int = 2048,
        timeout_s: float = 300.0,
        max_concurrency: int | None = None,
        requirements: list[str] | tuple[str, ...] = (),
        endpoint_url: str | None = None,
        profile: str | None = None,
        architecture: str = "x86_64",
        python_version: str = "3.12",
        wheel: str | None = None,
        store: str | None = None,
        parallelism: int | None = None,
        batches_per_function: int = 4,
        cluster_id: str | None = None,
        chaos: str | None = None,
        chaos_seed: int = 0,
        **former_names: Any,
    ) -> None:
        super().__init__(chaos=chaos, chaos_seed=chaos_seed)
        self.region = region
        self.memory_mb = check_integer("memory_mb", memory_mb, 128, 10_240)
        self.timeout_s = check_number("timeout_s", timeout_s, 0.0, 900.0, exclusive=True)
        self.max_concurrency = (
            None
            if max_concurrency is None
            else check_integer("max_concurrency", max_concurrency, 1, 100_000)
        )
        self.requirements = tuple(requirements)
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.architecture = architecture
        self.python_version = python_version
        self.wheel = wheel
        self.store_address = store
        self._parallelism = check_integer(
            "parallelism", parallelism or self.max_concurrency or 64, 1, 100_000
        )
        renamed = renamed_keywords(former_names, {"clusters_per_worker": "batches_per_function"})
        batches_per_function = renamed.get("batches_per_function", batches_per_function)
        self.batches_per_function = check_integer(
            "batches_per_function", batches_per_function, 1, 1000
        )
        host = urlparse(endpoint_url).hostname if endpoint_url else None
        # Functions of a local endpoint run on this machine, with this machine's libraries.
        self.local_endpoint = host in LOCAL_HOSTS
        self.cluster_id = cluster_id or f"ds-{uuid.uuid4().hex[:10]}"
        self.package: Any = None
        self.deployment: dict | None = None
        self._finalizer: Any = None

    @property
    def parallelism(self) -> int:
        """Functions the planner cuts a graph for."""
        return self._parallelism

    def _settings(self) -> str:
        return json.dumps(
            {"region": self.region, "endpoint_url": self.endpoint_url, "profile": self.profile}
        )

    def start(self) -> LambdaCluster:
        if self.running:
            return self
        deployer = _aws_deployer(self._settings())
        self.package = build_package(
            self.requirements,
            architecture=self.architecture,
            python_version=self.python_version,
            wheel=self.wheel,
            local_endpoint=self.local_endpoint,
        )
        spec = {
            "cluster_id": self.cluster_id,
            "handler": HANDLER,
            "runtime": f"python{self.python_version}",
            "architecture": self.architecture,
            "memory_mb": self.memory_mb,
            "timeout_s": int(self.timeout_s),
            "max_concurrency": self.max_concurrency,
            "environment": {
                "DASK_SERVERLESS_CLUSTER": self.cluster_id,
                "PYTHONHASHSEED": hash_seed(),
            },
        }
        try:
            record = deployer.deploy(json.dumps(spec), str(self.package.path))
        except BaseException:
            # Ctrl-C or an error mid-way: whatever carries this cluster's tag goes.
            deployer.cleanup(self.cluster_id, False)
            raise
        self._finalizer = weakref.finalize(self, _destroy, deployer, record)
        self._register_started()
        self.deployment = json.loads(record)
        region = self.deployment["region"]
        store = self.store_address or _s3_address(
            self.deployment["bucket"], region, self.endpoint_url
        )
        self._store = _core.Store.open(store)
        self._context = {
            "function": self.deployment["function_name"],
            "store": store,
            "platform": {
                "kind": "aws",
                "region": region,
                "endpoint_url": self.endpoint_url,
                "queue_url": self.deployment["queue_url"],
            },
        }
        return self

    def close(self) -> None:
        """Delete every resource the cluster created; safe to call twice."""
        self._restore_scheduler()
        self._unregister_started()
        self._context = None
        self._store = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def _stop_functions(self) -> None:
        # Lambda functions cannot be killed: with the run's clusters deleted, each one finds the
        # run gone at its next cluster and stops.
        return None

    def _forget_after_fork(self) -> None:
        # The deployment is the parent's: a forked child must never delete it at exit.
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._store = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"LambdaCluster(cluster_id={self.cluster_id!r}, region={self.region!r}, "
            f"memory_mb={self.memory_mb}, timeout_s={self.timeout_s:g}, {state})"
        )


def _aws_deployer(settings: str) -> Any:
    deployer_class = getattr(_core, "AwsDeployer", None)
    if deployer_class is None:
        raise ConfigurationError(
            "this build of dask-serverless has no AWS support (it was built for the local "
            "platform only, as `make demo` does): reinstall it with every backend, with "
            "`pip install .` or `make install`"
        )
    return deployer_class(settings)


def _s3_address(bucket: str, region: str, endpoint_url: str | None) -> str:
    query = {"region": region}
    if endpoint_url:
        query["endpoint"] = endpoint_url
    return f"s3://{bucket}?{urlencode(query)}"


def _destroy(deployer: Any, record: str) -> None:
    deployer.destroy(record)


def cleanup(
    region: str | None = None,
    endpoint_url: str | None = None,
    cluster_id: str | None = None,
    dry_run: bool = False,
    profile: str | None = None,
) -> list[str]:
    """Delete leftovers of clusters (all, or one) by their tag; returns what was deleted."""
    settings = json.dumps({"region": region, "endpoint_url": endpoint_url, "profile": profile})
    return _aws_deployer(settings).cleanup(cluster_id, dry_run)
