//! The TCP tests: rr, crr and stream.
use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{Ends, Run, Timed, Window, accept_one, cpu_ticks, join, listen, measure};
use crate::{
    bench::LoadKind,
    sys::{
        cpu::pin,
        netns::{run_in, spawn_in},
    },
};

pub(super) fn rr(ends: &Ends, w: Window, stop: &AtomicBool) -> io::Result<Timed> {
    let listener = match ends.user_port {
        Some(_) => None,
        None => Some(listen(ends, ends.port(LoadKind::Rr))?),
    };
    let server = std::thread::spawn(move || -> io::Result<()> {
        let Some(listener) = listener else {
            return Ok(());
        };
        pin(w.server_cpu);
        let mut s = accept_one(&listener)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let target = ends.target(LoadKind::Rr);
    let client = run_in(&ends.client_ns, || -> io::Result<Timed> {
        pin(w.client_cpu);
        let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = [0x33u8; 64];
        let t = measure(w, stop, || {
            let t0 = Instant::now();
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
            Ok((t0.elapsed(), None))
        });
        let _ = c.shutdown(Shutdown::Both);
        t
    });
    let server = join(server, "rr server");
    let client = client??;
    server?;
    Ok(client)
}

pub(super) fn crr(ends: &Ends, w: Window, stop: &AtomicBool) -> io::Result<Timed> {
    let listener = match ends.user_port {
        Some(_) => None,
        None => Some(listen(ends, ends.port(LoadKind::Crr))?),
    };
    let done = Arc::new(AtomicBool::new(false));
    let d2 = Arc::clone(&done);
    let server = std::thread::spawn(move || -> io::Result<()> {
        let Some(listener) = listener else {
            return Ok(());
        };
        pin(w.server_cpu);
        while !d2.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = listener.accept() else {
                continue;
            };
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut buf = [0u8; 64];
            if s.read_exact(&mut buf).is_ok() {
                let _ = s.write_all(&buf);
                // Wait for the client's close (an RST), so it is the one that ends it.
                let _ = s.read(&mut buf);
            }
        }
        Ok(())
    });
    let target = ends.target(LoadKind::Crr);
    let client = run_in(&ends.client_ns, || -> io::Result<Timed> {
        pin(w.client_cpu);
        measure(w, stop, || {
            let t0 = Instant::now();
            let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
            let tc = t0.elapsed();
            c.set_nodelay(true)?;
            c.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut buf = [0x44u8; 64];
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
            socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO))?;
            drop(c);
            Ok((t0.elapsed(), Some(tc)))
        })
    });
    done.store(true, Ordering::Relaxed);
    let server = join(server, "crr server");
    let client = client??;
    server?;
    Ok(client)
}

pub(super) fn stream(ends: &Ends, w: Window, stop: &AtomicBool, tps: f64) -> io::Result<Run> {
    let listener = listen(ends, ends.port(LoadKind::Stream))?;
    let bytes = Arc::new(AtomicU64::new(0));
    let b2 = Arc::clone(&bytes);
    let server = std::thread::spawn(move || -> io::Result<()> {
        pin(w.server_cpu);
        let mut s = accept_one(&listener)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => {
                    b2.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    });
    let target = ends.target(LoadKind::Stream);
    let total = w.warm + w.dur + Duration::from_millis(100);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop_flag);
    let sender = spawn_in(&ends.client_ns, move || -> io::Result<()> {
        pin(w.client_cpu);
        let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        c.set_write_timeout(Some(Duration::from_secs(3)))?;
        let buf = vec![0x66u8; 128 << 10];
        let end = Instant::now() + total;
        while Instant::now() < end && !s2.load(Ordering::Relaxed) {
            c.write_all(&buf)?;
        }
        let _ = c.shutdown(Shutdown::Both);
        Ok(())
    })?;
    std::thread::sleep(w.warm);
    let (c0, (k0, _)) = (bytes.load(Ordering::Relaxed), cpu_ticks());
    let t0 = Instant::now();
    let end = t0 + w.dur;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(
            Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())),
        );
    }
    let (c1, (k1, _)) = (bytes.load(Ordering::Relaxed), cpu_ticks());
    let el = t0.elapsed().as_secs_f64();
    stop_flag.store(true, Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("stream sender panicked"))?;
    let server = join(server, "stream server");
    sent??;
    server?;
    let mib = (c1 - c0) as f64 / f64::from(1u32 << 20);
    Ok(Run {
        rate: (c1 - c0) as f64 * 8.0 / el / 1e9,
        ops: mib,
        cpu_us_per_op: (k1.saturating_sub(k0)) as f64 / tps * 1e6 / mib.max(1e-9),
        ..Run::default()
    })
}
