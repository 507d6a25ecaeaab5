"""``LambdaCluster``: Dask computations on AWS Lambda, paid only while they run.

``with LambdaCluster(region=...):`` builds the deployment package, then creates — all tagged
with the cluster's id — an IAM role, an S3 bucket (data and fan-in), an SQS queue (the result
channel and the on-failure destination of asynchronous invocations) and the Lambda function,
and invokes it once (its first cold start, and the proof that the package runs), showing each
step on a progress line (``progress=False`` turns it off).
Every compute inside the block reuses them (warm functions stay warm); on exit, also after an
exception or Ctrl-C, everything is deleted. ``dask-serverless cleanup --region R`` finds and
deletes leftovers by tag.

While the cluster is open, a background thread renews its *last-seen mark* (the tag
``dask-serverless:last-seen`` on its function, Unix seconds) every ``RENEWAL_PERIOD_S``
seconds, so that a cleanup run elsewhere leaves a cluster in use alone: ``cleanup`` deletes
only clusters whose client was last seen ``older_than`` ago or more (15 minutes by default,
fifteen renewal periods; ``0`` for every cluster). A renewal that fails is logged and tried
again at the next period; closing the cluster (or its garbage collection, or the interpreter's
exit) stops the thread before the resources are deleted.

What the function prints goes to its CloudWatch Logs group, ``/aws/lambda/<function>``, which
Lambda creates at the first invocation; ``cluster.get_logs()`` reads the latest compute's
invocations from it, and the cluster deletes it with everything else when it closes.

Credentials and region come the standard AWS way (environment, profile, SSO). With
``endpoint_url`` every call goes to an AWS-compatible endpoint instead.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

from dask_serverless import _core
from dask_serverless._base import ServerlessCluster, hash_seed
from dask_serverless._progress import DeployProgress
from dask_serverless._validate import check_integer, check_number, renamed_keywords
from dask_serverless.errors import ConfigurationError
from dask_serverless.packaging import build_package

if TYPE_CHECKING:
    from dask_serverless._core import CleanupReport
    from dask_serverless.report import RunReport

HANDLER = "dask_serverless.handler.handler"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: How often an open cluster renews its last-seen mark. A cleanup spares clusters seen within
#: its ``older_than`` (15 minutes by default): a live client would have to miss fifteen
#: renewals in a row to look dead.
RENEWAL_PERIOD_S = 60.0

logger = logging.getLogger(__name__)


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
    progress:
        Show the start's steps on standard error (building the package, creating the role,
        the bucket, uploading, the queue, the function, its activation, its first cold start)
        with the time each takes; ``False`` shows nothing. The start invokes the function once
        and waits for it: a package that cannot run fails here, not at the first compute.
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
        progress: bool = True,
        **former_names: Any,
    ) -> None:
        super().__init__(chaos=chaos, chaos_seed=chaos_seed)
        self.progress = progress
        #: Seconds the first invocation took at start (a cold start), once started.
        self.first_cold_start_s: float | None = None
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
        self._renewal: _LastSeenRenewal | None = None
        self._deployer: Any = None
        self._record: str | None = None

    @property
    def parallelism(self) -> int:
        """Functions the planner cuts a graph for."""
        return self._parallelism

    def _settings(self) -> str:
        return json.dumps(
            {"region": self.region, "endpoint_url": self.endpoint_url, "profile": self.profile}
        )

    def _pricing_place(self) -> dict[str, Any]:
        region = (self.deployment or {}).get("region") or self.region or "us-east-1"
        return {
            "region": region,
            "architecture": self.architecture,
            "on_aws": self.endpoint_url is None,
        }

    def estimate(self, collection: Any, **options: Any) -> RunReport:
        """A compute of ``collection`` on this cluster as the simulator predicts it, with the
        cluster's memory size, concurrency limit, planning and architecture, on the model of
        AWS Lambda today (``dask_serverless.simulate``; ``options`` go to it, for example
        ``task_costs=`` or ``parameters=``). Needs no deployment: nothing runs on AWS."""
        from dask_serverless.simulation import simulate

        settings: dict[str, Any] = {
            "memory_mb": self.memory_mb,
            "max_concurrency": self.max_concurrency,
            "parallelism": self.parallelism,
            "batches_per_function": self.batches_per_function,
            "timeout_s": self.timeout_s,
            "architecture": self.architecture,
            "region": self._pricing_place()["region"],
        }
        if self.store_address is not None and self.store_address.startswith("redis"):
            settings["parameters"] = {"store": _redis_store_parameters()}
        settings.update(options)
        return simulate(collection, "lambda", **settings)

    def start(self) -> LambdaCluster:
        if self.running:
            return self
        progress = DeployProgress(f"LambdaCluster {self.cluster_id}", enabled=self.progress)
        progress.step("connecting")
        try:
            deployer = _aws_deployer(self._settings())
            progress.step("building the package")
            self.package = build_package(
                self.requirements,
                architecture=self.architecture,
                python_version=self.python_version,
                wheel=self.wheel,
                local_endpoint=self.local_endpoint,
            )
        except BaseException:
            progress.finish("failed")
            raise
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
                # What a task prints is logged at once, within the invocation that printed it.
                "PYTHONUNBUFFERED": "1",
            },
        }
        try:
            record = deployer.deploy(json.dumps(spec), str(self.package.path), progress.step)
            progress.step("first cold start")
            self.first_cold_start_s = deployer.first_invocation(record)
        except BaseException:
            progress.finish("failed, deleting what was created")
            # Ctrl-C or an error mid-way: whatever carries this cluster's tag goes, however
            # fresh its last-seen marks.
            deployer.cleanup(self.cluster_id, False, "0")
            raise
        progress.finish(
            f"ready ({self.package.zipped_bytes / 1e6:.1f} MB package, first cold start "
            f"{self.first_cold_start_s:.1f} s)"
        )
        self._renewal = _LastSeenRenewal(deployer, record, self.cluster_id, RENEWAL_PERIOD_S)
        self._finalizer = weakref.finalize(self, _destroy, deployer, record, self._renewal)
        self._register_started()
        self._deployer, self._record = deployer, record
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
        """Stop renewing the last-seen mark, then delete every resource the cluster created;
        safe to call twice."""
        self._restore_scheduler()
        self._unregister_started()
        self._context = None
        self._store = None
        self._deployer = self._record = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        if self._renewal is not None:
            self._renewal.stop()
            self._renewal = None

    def _stop_functions(self) -> None:
        # Lambda functions cannot be killed: with the run's clusters deleted, each one finds the
        # run gone at its next cluster and stops.
        return None

    def _invocation_logs(self, since: float) -> list[Any]:
        return self._deployer.invocation_logs(self._record, since)

    def _forget_after_fork(self) -> None:
        # The deployment is the parent's: a forked child must never delete it at exit.
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        # The renewal thread is the parent's too (a fork copies no thread).
        self._renewal = None
        self._store = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"LambdaCluster(cluster_id={self.cluster_id!r}, region={self.region!r}, "
            f"memory_mb={self.memory_mb}, timeout_s={self.timeout_s:g}, {state})"
        )

    def _display_settings(self) -> list[tuple[str, str]]:
        region = (self.deployment or {}).get("region") or self.region or "default"
        concurrency = self.max_concurrency
        return [
            ("cluster_id", self.cluster_id),
            ("region", str(region)),
            ("endpoint_url", self.endpoint_url or "AWS (the region's own)"),
            *super()._display_settings(),
            ("max_concurrency", "unreserved" if concurrency is None else str(concurrency)),
            ("architecture", self.architecture),
            ("python_version", self.python_version),
            ("store", self.store_address or "the cluster's S3 bucket"),
        ]


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


def _destroy(deployer: Any, record: str, renewal: _LastSeenRenewal) -> None:
    renewal.stop()
    deployer.destroy(record)


class _LastSeenRenewal:
    """Renews a cluster's last-seen mark now, then every ``period_s`` seconds, on a daemon
    thread until ``stop()``. It holds the deployer and the record, never the cluster, so that the
    cluster's garbage collection still runs its finalizer (which stops it)."""

    def __init__(self, deployer: Any, record: str, cluster_id: str, period_s: float) -> None:
        self._deployer = deployer
        self._record = record
        self._cluster_id = cluster_id
        self._period_s = period_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"dask-serverless-last-seen-{cluster_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        # At once (the deployment may have waited minutes since it marked the function), then
        # every period.
        while True:
            self._renew()
            if self._stopped.wait(self._period_s):
                return

    def _renew(self) -> None:
        try:
            self._deployer.mark_seen(self._record)
        except Exception as error:  # noqa: BLE001 - logged; the next period tries again
            logger.warning(
                "could not renew the last-seen mark of cluster %s (%s: %s); trying again in "
                "%g s. A cleanup deletes a cluster whose mark is older than its --older-than "
                "(15 minutes by default).",
                self._cluster_id,
                type(error).__name__,
                error,
                self._period_s,
            )

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop renewing; returns once the thread has ended (at most one renewal call late)."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def cleanup(
    region: str | None = None,
    endpoint_url: str | None = None,
    cluster_id: str | None = None,
    dry_run: bool = False,
    profile: str | None = None,
    older_than: str | float | datetime.timedelta | None = None,
) -> CleanupReport:
    """Delete leftovers of clusters (all, or the one ``cluster_id`` names) found by their tags,
    except clusters whose client was seen less than ``older_than`` ago.

    ``older_than`` is a duration as the command line writes it (``"30m"``, ``"2h"``, ``"1d"``,
    ``"0"``), a number of seconds or a ``timedelta``; ``None`` means 15 minutes. ``0`` deletes
    every cluster, including those in use. A cluster named by ``cluster_id`` follows the same
    rule. With ``dry_run``, nothing is deleted.

    The report's ``deleted`` lists the resources deleted (with ``dry_run``: to delete),
    ``skipped`` maps each cluster left alone to the seconds since its client was seen, and
    ``str(report)`` reads as the command's output, one line per skipped cluster and resource.
    """
    settings = json.dumps({"region": region, "endpoint_url": endpoint_url, "profile": profile})
    return _aws_deployer(settings).cleanup(cluster_id, dry_run, _duration_text(older_than))


def _duration_text(duration: str | float | datetime.timedelta | None) -> str | None:
    """``duration`` as the native cleanup reads it: whole seconds (rounded up) for numbers and
    timedeltas, strings as they are (checked natively), ``None`` for the default."""
    if duration is None or isinstance(duration, str):
        return duration
    if isinstance(duration, datetime.timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, int | float) and not isinstance(duration, bool):
        seconds = float(duration)
    else:
        raise TypeError(
            f"older_than must be a duration such as '30m', a number of seconds or a "
            f"timedelta, not {type(duration).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"older_than must be a finite, non-negative duration, not {duration!r}")
    return f"{math.ceil(seconds)}s"


def _redis_store_parameters() -> dict[str, Any]:
    """The store model of a Redis store (the one of the ``lambda-2020`` model)."""
    from dask_serverless.simulation import platform_parameters

    return platform_parameters("lambda-2020")["store"]
