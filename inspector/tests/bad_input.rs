//! Rows of docs/robustness.md's bad-input table that need a hostile environment rather than
//! a bad argument: a disk that fills up under `trace -w`, and a Docker socket that answers
//! garbage or never answers. (Bad arguments are `tests/errors.rs`; garbage in files and
//! answers is fuzzed, `tests/fuzz_regressions.rs`.)
mod support;

use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixListener,
    time::{Duration, Instant},
};

use support::{BridgeLab, Inspector, bpf_objects, eventually, run_inspector, unique};

/// The tests that check no program of ours is left in the kernel take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A tmpfs of 64 KiB, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("full"));
        std::fs::create_dir_all(&dir).unwrap();
        support::sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=64k",
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        Self(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `trace -w` on a disk that fills: one line naming the file and the reason, a non-zero
/// exit, nothing left attached; the packets up to then are a readable capture.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_full_disk_ends_trace_w_in_one_line_and_leaves_nothing() {
    let _turn = turn();
    let lab = BridgeLab::new("fd");
    let disk = SmallDisk::new();
    let file = disk.0.join("x.pcapng");
    let insp = Inspector::start(&[
        "trace",
        "-w",
        file.to_str().unwrap(),
        "--netns",
        &lab.a.name,
        "--duration",
        "60",
    ]);
    let pid = insp.pid();
    // ~400 KB of frames for a 64 KiB disk.
    support::in_ns(
        &lab.a.name,
        &[
            "ping",
            "-q",
            "-c",
            "300",
            "-i",
            "0.005",
            "-s",
            "1200",
            "198.18.0.3",
        ],
    );
    let out = insp.wait_exit(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with("inspector: error: writing the capture ")
            && errors[0].contains(file.to_str().unwrap())
            && errors[0].contains("No space left on device"),
        "{err}"
    );
    let held_gone = eventually(Duration::from_secs(10), || {
        !bpf_objects().progs.values().any(|n| n.starts_with("insp_"))
    });
    assert!(held_gone, "programs left after the inspector {pid} failed");
    // What was written before the disk filled is a capture tshark reads (up to its cut).
    let read = support::sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-c",
        "5",
        "-T",
        "fields",
        "-e",
        "frame.len",
    ]);
    assert!(read.lines().count() >= 1, "tshark read nothing: {read}");
}

/// A socket given as Docker's or the CRI runtime's that accepts and answers garbage, or never
/// answers: the inspector says so in one warning and goes on without that runtime (within
/// its 10 s timeout).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_runtime_socket_that_answers_garbage_or_hangs_is_one_warning() {
    let garbage = &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[{\"x"[..];
    for (flag, what, answer) in [
        ("--docker-socket", "garbage", Some(garbage)),
        ("--docker-socket", "hang", None),
        ("--cri-socket", "garbage", Some(garbage)),
        ("--cri-socket", "hang", None),
    ] {
        let what = format!("{flag} {what}");
        let path = std::env::temp_dir().join(format!("{}.sock", unique("rt")));
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let deadline = Instant::now() + Duration::from_mins(1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    match listener.accept() {
                        Ok((mut c, _)) => {
                            if let Some(a) = answer {
                                let mut buf = [0u8; 4096];
                                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                                let _ = c.read(&mut buf);
                                let _ = c.write_all(a);
                            } else {
                                held.push(c);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        let t0 = Instant::now();
        let out = run_inspector(
            &["topology", "-o", "json", flag, path.to_str().unwrap()],
            &[],
        );
        let took = t0.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {err}");
        let warnings: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(path.to_str().unwrap()))
            .collect();
        assert_eq!(warnings.len(), 1, "{what}: {err}");
        assert!(
            warnings[0].starts_with("inspector: warning: "),
            "{what}: {err}"
        );
        assert!(took < Duration::from_secs(25), "{what}: took {took:?}");
        assert!(
            !support::json_lines(&out.stdout, "netns").is_empty(),
            "{what}: no topology without Docker"
        );
    }
}

/// The reader of the output goes away (`inspector trace -w - 2>&1 | head -c 100`): the
/// inspector ends at its next write with status 141, as SIGPIPE would end it, says nothing,
/// and leaves nothing attached. (The runtime sockets' SIGPIPE does not end it: the test
/// above.)
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_reader_that_goes_away_ends_it_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let _turn = turn();
    let lab = BridgeLab::new("rg");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = std::process::Command::new(support::bin())
        .args([
            "trace",
            "-w",
            "-",
            "--netns",
            &lab.a.name,
            "--duration",
            "60",
        ])
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    // Like `head -c 100`: read what comes first (the capture's headers), then close.
    let mut reader = reader;
    let mut first = [0u8; 100];
    assert!(reader.read(&mut first).unwrap() > 0);
    drop(reader);
    let pid = child.id();
    support::in_ns(
        &lab.a.name,
        &["ping", "-q", "-c", "50", "-i", "0.01", "198.18.0.3"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running after its reader left"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        (status.code(), status.signal()),
        (Some(141), None),
        "{status}"
    );
    assert!(
        eventually(Duration::from_secs(10), || !bpf_objects()
            .progs
            .values()
            .any(|n| n.starts_with("insp_"))),
        "programs left after the inspector {pid} ended"
    );
}
