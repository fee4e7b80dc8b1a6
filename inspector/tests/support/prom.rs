//! A real Prometheus (Debian's `prometheus`) for the agent's tests: scraping one target every
//! second from its own port and data directory, queried over its HTTP API.
use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus scraping `target` every second, on its own port and data directory; killed
/// (and its directory removed) on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Prometheus {
    pub fn start(target: u16) -> Self {
        let dir = std::env::temp_dir().join(super::unique("prom"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: inspector\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (cargo xtask setup installs it)");
        let me = Self { child, port, dir };
        assert!(
            super::eventually(Duration::from_secs(30), || super::http_get(
                port, "/-/ready"
            )
            .is_some_and(|r| r.0 == 200)),
            "prometheus not ready"
        );
        me
    }

    /// Whether Prometheus parses and runs `q` (its API answers `"status":"success"`).
    pub fn accepts(&self, q: &str) -> bool {
        super::http_get(self.port, &format!("/api/v1/query?query={}", urlencode(q)))
            .is_some_and(|(code, body)| code == 200 && body.contains("\"status\":\"success\""))
    }

    /// An instant query: label set (as `k=v,...`) -> value.
    pub fn query(&self, q: &str) -> HashMap<String, f64> {
        let Some((200, body)) =
            super::http_get(self.port, &format!("/api/v1/query?query={}", urlencode(q)))
        else {
            return HashMap::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut m = HashMap::new();
        for r in v["data"]["result"].as_array().into_iter().flatten() {
            let labels = r["metric"]
                .as_object()
                .map(|o| {
                    let mut kv: Vec<String> = o
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect();
                    kv.sort();
                    kv.join(",")
                })
                .unwrap_or_default();
            let val = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            m.insert(labels, val);
        }
        m
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
