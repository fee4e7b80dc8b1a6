//! The CRI calls the bench makes (the identity layer's client only reads): run a pod
//! sandbox as kubelet would, read its address and network namespace, stop and remove it,
//! and list the sandboxes a run left behind.
use std::{collections::HashMap, path::Path};

use k8s_cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceOption,
    PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxStatusRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::Channel;

use crate::{bench::BenchError, identity::cri::parse_info};

/// A CRI runtime service on a unix socket, with its own small runtime.
pub(super) struct Client {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

fn err(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Input(format!("CRI {what}: {e}"))
}

/// A pod sandbox: its address and network namespace.
#[derive(Clone, Debug)]
pub(super) struct Sandbox {
    pub ip: std::net::Ipv4Addr,
    pub netns: String,
}

impl Client {
    pub(super) fn connect(socket: &Path) -> Result<Self, BenchError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BenchError::io("tokio runtime"))?;
        let client = rt.block_on(async {
            let ch = crate::identity::cri::channel(socket)
                .await
                .map_err(|e| err("connect", e))?;
            let mut c = RuntimeServiceClient::new(ch);
            c.version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|e| err("Version", e.message()))?;
            Ok::<_, BenchError>(c)
        })?;
        Ok(Self { rt, client })
    }

    /// Runs a sandbox `namespace/name` labelled with `labels` (and kubelet's own labels),
    /// in a network namespace of its own; returns its id.
    pub(super) fn run_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, String)],
        cgroup_parent: &str,
        log_dir: &str,
    ) -> Result<String, BenchError> {
        let uid = format!("{namespace}-{name}");
        let mut l: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        l.insert("io.kubernetes.pod.name".into(), name.into());
        l.insert("io.kubernetes.pod.namespace".into(), namespace.into());
        l.insert("io.kubernetes.pod.uid".into(), uid.clone());
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: namespace.into(),
                uid,
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.into(),
            labels: l,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: 0, // POD
                        pid: 1,     // CONTAINER
                        ipc: 0,     // POD
                        ..NamespaceOption::default()
                    }),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        };
        let mut c = self.client.clone();
        let r = self.rt.block_on(async move {
            c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        });
        Ok(
            r.map_err(|e| err(&format!("RunPodSandbox {namespace}/{name}"), e.message()))?
                .into_inner()
                .pod_sandbox_id,
        )
    }

    /// The sandbox's pod IP and network namespace path (from the verbose status).
    pub(super) fn sandbox(&self, id: &str, name: &str) -> Result<Sandbox, BenchError> {
        let mut c = self.client.clone();
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let s = self
            .rt
            .block_on(async move { c.pod_sandbox_status(req).await })
            .map_err(|e| err("PodSandboxStatus", e.message()))?
            .into_inner();
        let ip = s
            .status
            .as_ref()
            .and_then(|st| st.network.as_ref())
            .and_then(|n| n.ip.parse().ok())
            .ok_or_else(|| {
                err(
                    "PodSandboxStatus",
                    format!("pod {name} has no IPv4 address"),
                )
            })?;
        let (netns, _) = parse_info(s.info.get("info").map_or("", String::as_str));
        let netns = netns.ok_or_else(|| {
            err(
                "PodSandboxStatus",
                format!("pod {name} has no network namespace"),
            )
        })?;
        Ok(Sandbox { ip, netns })
    }

    /// Stops and removes a sandbox (its namespace, veth and address go with it).
    pub(super) fn remove(&self, id: &str) {
        let mut c = self.client.clone();
        let id = id.to_owned();
        let _ = self.rt.block_on(async move {
            c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
            c.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        });
    }

    /// Ids and label values of the sandboxes carrying `label`.
    pub(super) fn labelled(&self, label: &str) -> Vec<(String, String)> {
        let mut c = self.client.clone();
        let r = self.rt.block_on(async move {
            c.list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter::default()),
            })
            .await
        });
        r.map(|r| {
            r.into_inner()
                .items
                .into_iter()
                .filter_map(|p| Some((p.id.clone(), p.labels.get(label)?.clone())))
                .collect()
        })
        .unwrap_or_default()
    }
}
