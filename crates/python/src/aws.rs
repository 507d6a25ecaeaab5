//! AWS deployments, seen from Python: `LambdaCluster` creates, destroys, marks as seen and
//! cleans up through this class. Settings, specs and deployment records cross as JSON; a
//! cleanup's result as a [`CleanupReport`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dask_serverless_aws::{
    AwsSettings, ClusterId, DEFAULT_OLDER_THAN, DeployStep, Deployer, Deployment, DeploymentSpec,
    DestroyReport, format_duration, parse_duration,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde::Deserialize;

use crate::error::aws_error;
use crate::logs::{InvocationLog, unix_seconds};
use crate::{block_on_interruptible, runtime};

/// What `LambdaCluster` asks for.
#[derive(Debug, Deserialize)]
struct SpecRequest {
    cluster_id: String,
    handler: String,
    runtime: String,
    architecture: String,
    memory_mb: u32,
    timeout_s: u64,
    max_concurrency: Option<u32>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

fn json_error(what: &str, error: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("invalid {what}: {error}"))
}

fn described(report: &DestroyReport) -> Vec<String> {
    report.deleted.iter().map(ToString::to_string).collect()
}

/// What a cleanup did, or on a dry run would do.
#[pyclass(module = "dask_serverless._core", frozen, get_all)]
pub(crate) struct CleanupReport {
    /// The resources deleted (on a dry run: to delete), one description each.
    deleted: Vec<String>,
    /// The clusters left alone because their client was seen recently: id to seconds since.
    skipped: BTreeMap<String, f64>,
    /// One line per skipped cluster, saying why and how to insist.
    skipped_reasons: Vec<String>,
    dry_run: bool,
}

#[pymethods]
impl CleanupReport {
    /// The report as the command prints it: one line per skipped cluster, then per resource.
    fn __str__(&self) -> String {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let lines: Vec<String> = self
            .skipped_reasons
            .iter()
            .cloned()
            .chain(
                self.deleted
                    .iter()
                    .map(|resource| format!("{verb} {resource}")),
            )
            .collect();
        if lines.is_empty() {
            "nothing to delete".to_string()
        } else {
            lines.join("\n")
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "CleanupReport(deleted={:?}, skipped={:?}, dry_run={})",
            self.deleted,
            self.skipped,
            if self.dry_run { "True" } else { "False" }
        )
    }
}

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct AwsDeployer {
    deployer: Deployer,
}

#[pymethods]
impl AwsDeployer {
    /// Loads credentials and region the standard way and checks them (fails within seconds
    /// with a message that says what to do).
    #[new]
    fn new(py: Python<'_>, settings: &str) -> PyResult<AwsDeployer> {
        let settings: AwsSettings =
            serde_json::from_str(settings).map_err(|error| json_error("settings", error))?;
        let deployer = py
            .detach(|| runtime().block_on(Deployer::connect(&settings)))
            .map_err(aws_error)?;
        Ok(AwsDeployer { deployer })
    }

    #[getter]
    fn region(&self) -> String {
        self.deployer.region().to_owned()
    }

    /// Creates every resource of a cluster; returns the deployment record (JSON). `progress`,
    /// if given, is called with the text of each step as it begins. Ctrl-C stops it (the
    /// caller then deletes what carries the cluster's tag).
    #[pyo3(signature = (spec, package, progress = None))]
    fn deploy(
        &self,
        py: Python<'_>,
        spec: &str,
        package: std::path::PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let request: SpecRequest =
            serde_json::from_str(spec).map_err(|error| json_error("deployment spec", error))?;
        let code = std::fs::read(&package).map_err(|error| {
            PyValueError::new_err(format!(
                "cannot read the deployment package {}: {error}",
                package.display()
            ))
        })?;
        let cluster_id = ClusterId::new(request.cluster_id).map_err(aws_error)?;
        let mut spec = DeploymentSpec::new(cluster_id, Bytes::from(code), request.handler);
        spec.runtime = request.runtime.parse().map_err(aws_error)?;
        spec.architecture = request.architecture.parse().map_err(aws_error)?;
        spec.memory_mb = request.memory_mb;
        spec.timeout = Duration::from_secs(request.timeout_s);
        spec.max_concurrency = request.max_concurrency;
        spec.environment = request.environment;
        let report = |step: DeployStep| {
            if let Some(progress) = &progress {
                Python::attach(|py| {
                    if let Err(error) = progress.call1(py, (step.to_string(),)) {
                        error.write_unraisable(py, Some(progress.bind(py)));
                    }
                });
            }
        };
        let deployment =
            block_on_interruptible(py, self.deployer.deploy_reporting(&spec, &report))?
                .map_err(aws_error)?;
        serde_json::to_string(&deployment).map_err(|error| json_error("deployment", error))
    }

    /// Invokes a deployment's function once and waits for its answer (the first cold start);
    /// returns the seconds it took. A function that cannot start raises `PlatformError`.
    fn first_invocation(&self, py: Python<'_>, deployment: &str) -> PyResult<f64> {
        let deployment: Deployment =
            serde_json::from_str(deployment).map_err(|error| json_error("deployment", error))?;
        let took = block_on_interruptible(py, self.deployer.first_invocation(&deployment))?
            .map_err(aws_error)?;
        Ok(took.as_secs_f64())
    }

    /// Deletes every resource of a deployment; returns what was deleted.
    fn destroy(&self, py: Python<'_>, deployment: &str) -> PyResult<Vec<String>> {
        let deployment: Deployment =
            serde_json::from_str(deployment).map_err(|error| json_error("deployment", error))?;
        let deployer = &self.deployer;
        let report = py
            .detach(|| runtime().block_on(deployer.destroy(&deployment)))
            .map_err(aws_error)?;
        Ok(described(&report))
    }

    /// What a deployment's function printed in the invocations that started at `since` (Unix
    /// seconds) or later, from its CloudWatch Logs group, in the order they started.
    fn invocation_logs(
        &self,
        py: Python<'_>,
        deployment: &str,
        since: f64,
    ) -> PyResult<Vec<InvocationLog>> {
        let deployment: Deployment =
            serde_json::from_str(deployment).map_err(|error| json_error("deployment", error))?;
        let since = std::time::UNIX_EPOCH + Duration::from_secs_f64(since.max(0.0));
        let deployer = &self.deployer;
        let logs = py
            .detach(|| runtime().block_on(deployer.invocation_logs(&deployment, since)))
            .map_err(aws_error)?;
        Ok(logs
            .into_iter()
            .map(|log| InvocationLog {
                invocation_id: log.request_id,
                started: unix_seconds(log.started),
                text: log.text,
                omitted_bytes: log.omitted_bytes,
            })
            .collect())
    }

    /// Renews the last-seen mark of a deployment's cluster: its client is alive.
    fn mark_seen(&self, py: Python<'_>, deployment: &str) -> PyResult<()> {
        let deployment: Deployment =
            serde_json::from_str(deployment).map_err(|error| json_error("deployment", error))?;
        let deployer = &self.deployer;
        py.detach(|| runtime().block_on(deployer.mark_seen(&deployment, SystemTime::now())))
            .map_err(aws_error)
    }

    /// Finds (and unless `dry_run`, deletes) the resources tagged with a cluster id, or with
    /// any cluster id when `cluster` is None, except those of clusters whose client was seen
    /// less than `older_than` ago (`30m`, `2h`, `1d`, `0`; default 15 minutes).
    #[pyo3(signature = (cluster=None, dry_run=false, older_than=None))]
    fn cleanup(
        &self,
        py: Python<'_>,
        cluster: Option<String>,
        dry_run: bool,
        older_than: Option<&str>,
    ) -> PyResult<CleanupReport> {
        let older_than = older_than
            .map(parse_duration)
            .transpose()
            .map_err(aws_error)?
            .unwrap_or(DEFAULT_OLDER_THAN);
        let deployer = &self.deployer;
        let cluster = cluster.as_deref();
        let leftovers = py
            .detach(|| runtime().block_on(deployer.leftovers(cluster, older_than)))
            .map_err(aws_error)?;
        let skipped = leftovers
            .skipped
            .iter()
            .map(|skipped| (skipped.cluster.clone(), skipped.seen_ago.as_secs_f64()))
            .collect();
        let skipped_reasons = leftovers
            .skipped
            .iter()
            .map(|skipped| {
                format!(
                    "skipped {skipped}, less than older_than='{}'; pass older_than=0 to delete \
                     it anyway",
                    format_duration(older_than)
                )
            })
            .collect();
        let deleted = if dry_run {
            leftovers
                .to_delete
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            let report = py
                .detach(|| runtime().block_on(deployer.delete_leftovers(leftovers)))
                .map_err(aws_error)?;
            described(&report)
        };
        Ok(CleanupReport {
            deleted,
            skipped,
            skipped_reasons,
            dry_run,
        })
    }
}
