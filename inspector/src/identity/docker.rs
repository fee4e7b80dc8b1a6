//! Docker Engine API over its unix socket: running containers with their network mode,
//! addresses, published ports, sandbox and pid; and the event stream, which says when
//! containers start and stop. A tiny HTTP/1.1 client (GET only, chunked or sized bodies) is
//! all the API needs, so no HTTP stack is pulled in.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use serde::Deserialize;

use crate::sys::nudge::Nudger;

use super::{Error, Kind, Provider, PublishedPort, Workload, procfs};

/// Where dockerd listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// One GET on the Docker socket; returns the decoded body of a 2xx answer.
///
/// # Errors
/// Socket errors, non-2xx status (with the daemon's message), malformed HTTP.
pub fn get(socket: &Path, path: &str) -> Result<Vec<u8>, Error> {
    let what = || format!("docker API at {}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(|e| Error::io(what(), e))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| Error::io(what(), e))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: inspector\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| Error::io(what(), e))?;
    let (status, body) = read_response(&mut BufReader::new(s)).map_err(|e| Error::io(what(), e))?;
    if !(200..300).contains(&status) {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        return Err(Error::Protocol(format!("GET {path}: HTTP {status}: {msg}")));
    }
    Ok(body)
}

/// The most of a body the daemon may send (the largest answer, a full container list of a
/// busy node, is a few MiB): a length above it is garbage, not a reason to allocate.
const MAX_BODY: usize = 256 << 20;

/// Reads one HTTP/1.1 answer: (status, body), sized, chunked or to the end, at most
/// [`MAX_BODY`] bytes.
///
/// # Errors
/// Malformed status line, headers, chunk sizes or lengths; a body over the limit.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<u8>)> {
    let (status, chunked, len) = read_head(r)?;
    Ok((status, read_body(r, chunked, len)?))
}

fn too_big() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("an HTTP body over {} MiB", MAX_BODY >> 20),
    )
}

/// Reads the status line and headers: (status, chunked, content-length).
fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, bool, Option<usize>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not an HTTP answer"))?;
    let (mut chunked, mut len) = (false, None);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((status, chunked, len));
        }
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().ok();
            }
        }
    }
}

/// Reads one chunk of a chunked body; `None` at the last (empty) chunk.
fn read_chunk(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
    if size > MAX_BODY {
        return Err(too_big());
    }
    let mut buf = vec![0; size + 2];
    r.read_exact(&mut buf)?;
    buf.truncate(size);
    Ok((size > 0).then_some(buf))
}

fn read_body(r: &mut impl BufRead, chunked: bool, len: Option<usize>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if chunked {
        while let Some(c) = read_chunk(r)? {
            if body.len() + c.len() > MAX_BODY {
                return Err(too_big());
            }
            body.extend_from_slice(&c);
        }
    } else if let Some(n) = len {
        if n > MAX_BODY {
            return Err(too_big());
        }
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        std::io::Read::read_to_end(&mut std::io::Read::take(r, MAX_BODY as u64 + 1), &mut body)?;
        if body.len() > MAX_BODY {
            return Err(too_big());
        }
    }
    Ok(body)
}

#[derive(Deserialize)]
struct Listed {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Inspect {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "State")]
    state: State,
    #[serde(rename = "Config")]
    config: Config,
    #[serde(rename = "HostConfig")]
    host_config: HostConfig,
    #[serde(rename = "NetworkSettings")]
    network: NetworkSettings,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct State {
    #[serde(rename = "Pid")]
    pid: u32,
    #[serde(rename = "Running")]
    running: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HostConfig {
    #[serde(rename = "NetworkMode")]
    network_mode: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NetworkSettings {
    #[serde(rename = "SandboxKey")]
    sandbox_key: String,
    #[serde(rename = "Ports")]
    ports: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    #[serde(rename = "Networks")]
    networks: Option<BTreeMap<String, Network>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PortBinding {
    #[serde(rename = "HostIp")]
    host_ip: String,
    #[serde(rename = "HostPort")]
    host_port: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Network {
    #[serde(rename = "IPAddress")]
    ip: String,
    #[serde(rename = "GlobalIPv6Address")]
    ip6: String,
}

/// Docker's answer to `GET /containers/{id}/json` as a workload (netns from the sandbox
/// key, else from the pid; `default` network mode is called what it is, `bridge`).
///
/// # Errors
/// When the JSON is not a container inspection.
pub fn parse_inspect(json: &[u8]) -> Result<Workload, Error> {
    let c: Inspect = serde_json::from_slice(json)
        .map_err(|e| Error::Protocol(format!("container inspection: {e}")))?;
    if c.id.is_empty() {
        return Err(Error::Protocol("container inspection without an Id".into()));
    }
    let mode = match c.host_config.network_mode.as_str() {
        "" => None,
        "default" => Some("bridge".to_owned()),
        m => Some(m.to_owned()),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for n in c.network.networks.iter().flat_map(|m| m.values()) {
        for a in [&n.ip, &n.ip6] {
            if let Ok(ip) = a.parse()
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
    }
    let mut ports = Vec::new();
    for (spec, binds) in c.network.ports.iter().flatten() {
        let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let Ok(container_port) = port.parse() else {
            continue;
        };
        for b in binds.iter().flatten() {
            let Ok(host_port) = b.host_port.parse() else {
                continue;
            };
            ports.push(PublishedPort {
                proto: proto.to_owned(),
                host_ip: b
                    .host_ip
                    .parse()
                    .ok()
                    .filter(|ip: &IpAddr| !ip.is_unspecified()),
                host_port,
                container_port,
            });
        }
    }
    ports.dedup_by(|a, b| {
        a.proto == b.proto
            && a.host_port == b.host_port
            && a.container_port == b.container_port
            && a.host_ip == b.host_ip
    });
    let pid = (c.state.running && c.state.pid > 0).then_some(c.state.pid);
    let netns_path = (!c.network.sandbox_key.is_empty()).then_some(c.network.sandbox_key);
    let netns = pid
        .and_then(procfs::netns_of_pid)
        .or_else(|| netns_path.as_deref().and_then(crate::sys::netns::inode_of));
    Ok(Workload {
        name: c.name.trim_start_matches('/').to_owned(),
        id: c.id,
        kind: Some(Kind::Container),
        runtime: "docker".into(),
        network_mode: mode,
        image: (!c.config.image.is_empty()).then_some(c.config.image),
        netns,
        netns_path,
        pids: pid.into_iter().collect(),
        ips,
        ports,
        labels: c.config.labels.unwrap_or_default(),
        ..Workload::default()
    })
}

/// A container lifecycle event from Docker's event stream.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DockerEvent {
    /// create, start, die, stop, destroy, ...
    pub action: String,
    pub id: String,
    pub name: String,
    pub time_ns: u64,
}

/// Decodes one line of the event stream (`None` for non-container events).
#[must_use]
pub fn parse_event(line: &[u8]) -> Option<DockerEvent> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if v["Type"] != "container" {
        return None;
    }
    Some(DockerEvent {
        action: v["Action"].as_str()?.to_owned(),
        id: v["Actor"]["ID"].as_str()?.to_owned(),
        name: v["Actor"]["Attributes"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        time_ns: v["timeNano"].as_u64().unwrap_or_default(),
    })
}

/// The Docker provider: lists running containers, inspects each once, and re-inspects only
/// those the event stream says changed (everything, if the stream is down).
pub struct Docker {
    socket: PathBuf,
    cache: HashMap<String, Workload>,
    changed: Arc<Mutex<HashSet<String>>>,
    stream_up: Arc<std::sync::atomic::AtomicBool>,
    /// The event-following thread runs (it ends with the stream: dockerd went away).
    following: Arc<std::sync::atomic::AtomicBool>,
    /// Where events go (kept to follow the stream again when dockerd is back).
    events: Option<mpsc::Sender<DockerEvent>>,
    nudger: Option<Nudger>,
    /// When the stream was last followed (again at most every [`FOLLOW_AGAIN`]).
    followed_at: std::time::Instant,
    /// Unix time (ns) the stream is followed again from: just after the last event seen, or
    /// when it was first followed. Docker replays what happened since, so nothing that
    /// happened while it was away or coming back (a container started) is missed.
    resume_ns: Arc<std::sync::atomic::AtomicU64>,
}

/// How often an ended event stream is followed again, at most (a daemon that answers lists
/// and not events must not cost a thread per rescan).
const FOLLOW_AGAIN: Duration = Duration::from_secs(5);

impl Docker {
    /// A provider on `socket`; `events` (if given) also receives each lifecycle event.
    /// Returns `None` if nothing answers on the socket.
    #[must_use]
    pub fn connect(
        socket: &Path,
        events: Option<mpsc::Sender<DockerEvent>>,
        nudger: Option<Nudger>,
    ) -> Option<Self> {
        get(socket, "/_ping").ok()?;
        let me = Self {
            socket: socket.to_owned(),
            cache: HashMap::new(),
            changed: Arc::default(),
            stream_up: Arc::default(),
            following: Arc::default(),
            events,
            nudger,
            followed_at: std::time::Instant::now(),
            resume_ns: Arc::new(std::sync::atomic::AtomicU64::new(unix_now_ns())),
        };
        me.follow_events();
        Some(me)
    }

    /// Follows the event stream on a thread of its own: each event marks its container for
    /// re-inspection, is passed on (`events`), and wakes the follower (`nudger`) so a new
    /// container is named by a rescan at once, not at the next period.
    /// Run again by a list that answered after the stream ended (dockerd restarted).
    fn follow_events(&self) {
        let (socket, changed, up, following) = (
            self.socket.clone(),
            self.changed.clone(),
            self.stream_up.clone(),
            self.following.clone(),
        );
        let (events, nudger) = (self.events.clone(), self.nudger.clone());
        let resume = self.resume_ns.clone();
        let since = resume.load(std::sync::atomic::Ordering::Relaxed);
        following.store(true, std::sync::atomic::Ordering::Relaxed);
        let r = std::thread::Builder::new()
            .name("docker-events".into())
            .spawn(move || {
                let _ended = Ended(following);
                let Ok(mut s) = UnixStream::connect(&socket) else {
                    return;
                };
                let q = format!(
                    "/events?since={}.{:09}&filters=%7B%22type%22%3A%5B%22container%22%5D%7D",
                    since / 1_000_000_000,
                    since % 1_000_000_000
                );
                if write!(
                    s,
                    "GET {q} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
                )
                .is_err()
                {
                    return;
                }
                let mut r = BufReader::new(s);
                let Ok((200, true, _)) = read_head(&mut r) else {
                    return;
                };
                up.store(true, std::sync::atomic::Ordering::Relaxed);
                let mut pending = Vec::new();
                while let Ok(Some(chunk)) = read_chunk(&mut r) {
                    pending.extend_from_slice(&chunk);
                    while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=nl).collect();
                        let Some(ev) = parse_event(&line) else {
                            continue;
                        };
                        if let Ok(mut c) = changed.lock() {
                            c.insert(ev.id.clone());
                        }
                        resume.fetch_max(ev.time_ns + 1, std::sync::atomic::Ordering::Relaxed);
                        if let Some(tx) = &events {
                            let _ = tx.send(ev);
                        }
                        if let Some(n) = &nudger {
                            n.nudge();
                        }
                    }
                }
                up.store(false, std::sync::atomic::Ordering::Relaxed);
            });
        if r.is_err() {
            self.following
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Unix time now, in ns.
fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Clears "following" when the event thread ends, however it ends.
struct Ended(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Provider for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn list(&mut self) -> Result<Vec<Workload>, Error> {
        let listed: Vec<Listed> = serde_json::from_slice(&get(&self.socket, "/containers/json")?)
            .map_err(|e| Error::Protocol(format!("container list: {e}")))?;
        // It answers: if its event stream ended (it went away and is back), follow anew.
        // Until that stream is up, every container is inspected afresh.
        if !self.following.load(std::sync::atomic::Ordering::Relaxed)
            && self.followed_at.elapsed() >= FOLLOW_AGAIN
        {
            self.followed_at = std::time::Instant::now();
            self.follow_events();
        }
        let live: HashSet<&str> = listed.iter().map(|l| l.id.as_str()).collect();
        self.cache.retain(|id, _| live.contains(id.as_str()));
        let stale: HashSet<String> = if self.stream_up.load(std::sync::atomic::Ordering::Relaxed) {
            std::mem::take(
                &mut *self
                    .changed
                    .lock()
                    .map_err(|_| Error::Protocol("poisoned".into()))?,
            )
        } else {
            self.cache.keys().cloned().collect()
        };
        for l in &listed {
            if self.cache.contains_key(&l.id) && !stale.contains(&l.id) {
                continue;
            }
            // A container may be gone between list and inspect, or be stopping (listed, but
            // its process and namespace already gone): skip it then, so the last record made
            // while it ran stands.
            match get(&self.socket, &format!("/containers/{}/json", l.id))
                .and_then(|b| parse_inspect(&b))
            {
                Ok(w) if !w.pids.is_empty() => {
                    self.cache.insert(l.id.clone(), w);
                }
                _ => {
                    self.cache.remove(&l.id);
                }
            }
        }
        Ok(self.cache.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/testdata/docker/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    #[test]
    fn bridge_container_with_published_port() {
        let w = parse_inspect(&fixture("inspect-pub.json")).expect("parse");
        assert_eq!(w.name, "pub");
        assert_eq!(w.runtime, "docker");
        assert_eq!(
            w.network_mode.as_deref(),
            Some("bridge"),
            "\"default\" is the bridge"
        );
        assert_eq!(w.ips, vec!["198.19.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            w.netns_path.as_deref(),
            Some("/var/run/docker/netns/89574d25a4b8")
        );
        assert_eq!(w.image.as_deref(), Some("insp-busybox:1"));
        assert_eq!(
            w.ports,
            vec![PublishedPort {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 8080,
                container_port: 80
            }],
            "the IPv4 and IPv6 wildcard bindings are one published port"
        );
        assert_eq!(w.pids, vec![8650]);
    }

    #[test]
    fn container_host_and_none_modes() {
        let side = parse_inspect(&fixture("inspect-side.json")).expect("side");
        let web = parse_inspect(&fixture("inspect-web.json")).expect("web");
        assert_eq!(side.network_mode, Some(format!("container:{}", web.id)));
        assert!(side.ips.is_empty() && side.netns_path.is_none());
        let host = parse_inspect(&fixture("inspect-hostc.json")).expect("host");
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert!(host.ips.is_empty());
        let none = parse_inspect(&fixture("inspect-nonec.json")).expect("none");
        assert_eq!(none.network_mode.as_deref(), Some("none"));
        assert!(none.ips.is_empty() && none.netns_path.is_some());
    }

    #[test]
    fn list_and_events() {
        let l: Vec<Listed> = serde_json::from_slice(&fixture("list.json")).expect("list");
        assert_eq!(l.len(), 5);
        let evs: Vec<DockerEvent> = fixture("events.jsonl")
            .split(|b| *b == b'\n')
            .filter_map(parse_event)
            .collect();
        let actions: Vec<&str> = evs.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["create", "start", "kill", "die", "destroy"]);
        assert!(
            evs.iter()
                .all(|e| e.name == "ev1" && e.id.len() == 64 && e.time_ns > 0)
        );
    }

    #[test]
    fn bad_json_is_an_error_not_a_workload() {
        assert!(parse_inspect(b"{}").is_err());
        assert!(parse_inspect(b"not json").is_err());
    }

    #[test]
    fn http_chunked_and_sized_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let (st, ch, len) = read_head(&mut r).unwrap();
        assert_eq!((st, ch, len), (200, true, None));
        assert_eq!(read_body(&mut r, ch, len).unwrap(), b"hello world");
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nnoEXTRA";
        let mut r = BufReader::new(&raw[..]);
        let (st, ch, len) = read_head(&mut r).unwrap();
        assert_eq!((st, ch, len), (404, false, Some(2)));
        assert_eq!(read_body(&mut r, ch, len).unwrap(), b"no");
    }
}
