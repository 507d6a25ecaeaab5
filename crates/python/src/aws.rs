//! AWS deployments, seen from Python: `LambdaCluster` creates, destroys and cleans up through
//! this class. Settings, specs and deployment records cross as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use dask_serverless_aws::{
    AwsSettings, ClusterId, Deployer, Deployment, DeploymentSpec, DestroyReport,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde::Deserialize;

use crate::error::aws_error;
use crate::runtime;

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

    /// Creates every resource of a cluster; returns the deployment record (JSON).
    fn deploy(&self, py: Python<'_>, spec: &str, package: std::path::PathBuf) -> PyResult<String> {
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
        let deployer = &self.deployer;
        let deployment = py
            .detach(|| runtime().block_on(deployer.deploy(&spec)))
            .map_err(aws_error)?;
        serde_json::to_string(&deployment).map_err(|error| json_error("deployment", error))
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

    /// Finds (and unless `dry_run`, deletes) the resources tagged with a cluster id, or with
    /// any cluster id when `cluster` is None.
    #[pyo3(signature = (cluster=None, dry_run=false))]
    fn cleanup(
        &self,
        py: Python<'_>,
        cluster: Option<String>,
        dry_run: bool,
    ) -> PyResult<Vec<String>> {
        let deployer = &self.deployer;
        let cluster = cluster.as_deref();
        if dry_run {
            let found = py
                .detach(|| runtime().block_on(deployer.leftovers(cluster)))
                .map_err(aws_error)?;
            return Ok(found.iter().map(ToString::to_string).collect());
        }
        let report = py
            .detach(|| runtime().block_on(deployer.cleanup(cluster)))
            .map_err(aws_error)?;
        Ok(described(&report))
    }
}
