//! CRI (containerd, CRI-O) over its unix socket with the `k8s-cri` gRPC bindings: pod
//! sandboxes with their Kubernetes namespace/name/uid, labels, pod IPs, network namespace
//! (from the verbose status info, as kubelet never needs it) and the containers in each pod.
use std::{collections::HashMap, path::Path, time::Duration};

use k8s_cri::v1::{
    ListContainersRequest, ListPodSandboxRequest, PodSandboxStatusRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Error, Kind, Provider, Workload, procfs};

/// Where CRI runtimes listen by default, tried in order when no `--cri-socket` is given.
pub const DEFAULT_SOCKETS: [&str; 3] = [
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
];

pub struct Cri {
    runtime_name: String,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

fn proto(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("{what}: {e}"))
}

/// A gRPC channel to a unix socket (tonic needs a URI; the connector ignores it).
///
/// # Errors
/// When the socket does not accept the connection.
pub async fn channel(socket: &Path) -> Result<Channel, Error> {
    let path = socket.to_owned();
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| proto("endpoint", e))?
        .connect_timeout(Duration::from_secs(3))
        // As Docker's: a runtime that takes no answer in 10 s is taken as gone.
        .timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .map_err(|e| proto("connect", e))
}

impl Cri {
    /// Connects and asks the runtime its name. `Err` if nothing speaks CRI on the socket.
    ///
    /// # Errors
    /// Connection failure, or a runtime without the CRI service.
    pub fn connect(socket: &Path) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let (client, runtime_name) = rt.block_on(async move {
            let channel = channel(socket).await?;
            let mut client = RuntimeServiceClient::new(channel);
            let v = client
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await
                .map_err(|e| proto("Version", e.message()))?
                .into_inner();
            Ok::<_, Error>((client, v.runtime_name))
        })?;
        Ok(Self {
            runtime_name,
            rt,
            client,
        })
    }
}

/// What the verbose pod status says about the sandbox that the typed fields do not: the
/// network namespace path and the pause process.
#[must_use]
pub fn parse_info(info: &str) -> (Option<String>, Option<u32>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(info) else {
        return (None, None);
    };
    let path = v["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|ns| {
            ns.iter()
                .find(|n| n["type"] == "network")
                .and_then(|n| n["path"].as_str())
        })
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let pid = v["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0);
    (path, pid)
}

impl Provider for Cri {
    fn name(&self) -> &'static str {
        "cri"
    }

    fn list(&mut self) -> Result<Vec<Workload>, Error> {
        let client = &mut self.client;
        let runtime = self.runtime_name.clone();
        self.rt.block_on(async {
            let pods = client
                .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await
                .map_err(|e| proto("ListPodSandbox", e.message()))?
                .into_inner()
                .items;
            let containers = client
                .list_containers(ListContainersRequest { filter: None })
                .await
                .map_err(|e| proto("ListContainers", e.message()))?
                .into_inner()
                .containers;
            let mut by_pod: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for c in containers {
                let name = c.metadata.map(|m| m.name).unwrap_or_default();
                by_pod
                    .entry(c.pod_sandbox_id)
                    .or_default()
                    .push((c.id, name));
            }
            let mut out = Vec::new();
            for p in pods {
                // 0 = SANDBOX_READY; a stopped sandbox has no namespace any more.
                if p.state != 0 {
                    continue;
                }
                let Ok(st) = client
                    .pod_sandbox_status(PodSandboxStatusRequest {
                        pod_sandbox_id: p.id.clone(),
                        verbose: true,
                    })
                    .await
                else {
                    continue;
                };
                let st = st.into_inner();
                let (netns_path, pid) = st.info.get("info").map_or((None, None), |i| parse_info(i));
                let status = st.status.unwrap_or_default();
                let meta = status.metadata.or(p.metadata).unwrap_or_default();
                let mut ips = Vec::new();
                if let Some(n) = &status.network {
                    for a in std::iter::once(n.ip.as_str())
                        .chain(n.additional_ips.iter().map(|a| a.ip.as_str()))
                    {
                        if let Ok(ip) = a.parse() {
                            ips.push(ip);
                        }
                    }
                }
                // NamespaceMode NODE (2): the pod uses the node's network (hostNetwork).
                let host_network = status
                    .linux
                    .and_then(|l| l.namespaces)
                    .and_then(|n| n.options)
                    .is_some_and(|o| o.network == 2);
                let members = by_pod.remove(&p.id).unwrap_or_default();
                let netns = pid
                    .and_then(procfs::netns_of_pid)
                    .or_else(|| netns_path.as_deref().and_then(crate::sys::netns::inode_of));
                out.push(Workload {
                    name: format!("{}/{}", meta.namespace, meta.name),
                    id: p.id,
                    kind: Some(Kind::Pod),
                    runtime: runtime.clone(),
                    network_mode: Some(if host_network { "host" } else { "pod" }.into()),
                    netns,
                    netns_path,
                    pids: pid.into_iter().collect(),
                    ips,
                    labels: status.labels.into_iter().collect(),
                    containers: members.iter().map(|(_, n)| n.clone()).collect(),
                    member_ids: members.into_iter().map(|(id, _)| id).collect(),
                    ..Workload::default()
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_info_gives_netns_path_and_pid() {
        // Abridged from containerd 1.6's PodSandboxStatus(verbose) "info".
        let info = r#"{"pid":18600,"processStatus":"running","netNamespaceClosed":false,
            "runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},
            {"type":"mount"},{"type":"network","path":"/var/run/netns/cni-a0e79870-f359-9d92-46c3-8995e9b64613"}]}},
            "cniResult":{"Interfaces":{"eth0":{"IPConfigs":[{"IP":"198.18.0.2"}],
            "Sandbox":"/var/run/netns/cni-a0e79870-f359-9d92-46c3-8995e9b64613"}}}}"#;
        assert_eq!(
            parse_info(info),
            (
                Some("/var/run/netns/cni-a0e79870-f359-9d92-46c3-8995e9b64613".into()),
                Some(18600)
            )
        );
        let host = r#"{"pid":7,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"}]}}}"#;
        assert_eq!(
            parse_info(host),
            (None, Some(7)),
            "hostNetwork pods join no netns"
        );
        assert_eq!(parse_info("garbage"), (None, None));
    }
}
