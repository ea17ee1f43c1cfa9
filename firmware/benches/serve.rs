//! The web page while the device counts: GET latency of the count page (`/`) on an idle server and
//! during a simulated count, in the same run, with the server (and its count) on one CPU core
//! (`taskset -c 0` where it exists), and the server's resident memory idle and during the count.
//!
//! `cargo bench -p leukoscope --bench serve` (the release binary; goal p95 ≤ 50 ms on one core).
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{add_user, bin, scratch, Server, PASSWORD, USER};

const SAMPLES: usize = 200;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn rss_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; a `cargo test --benches` run passes nothing: then only check it starts.
    let quick = !std::env::args().any(|a| a == "--bench");
    let data = scratch("bench");
    add_user(&data, USER, PASSWORD);
    let one_core = Command::new("taskset").arg("-V").output().is_ok();
    let cmd = if one_core {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", env!("CARGO_BIN_EXE_leukoscope")]);
        c
    } else {
        bin()
    };
    let server = Server::start_with(cmd, &data, "127.0.0.1:0", &["--refocus-every", "1"]);
    let me = server.signed_in();
    let n = if quick { 5 } else { SAMPLES };
    let get = || {
        let t = Instant::now();
        let r = me.get("/");
        assert_eq!(r.status, 200);
        t.elapsed().as_secs_f64() * 1e3
    };
    for _ in 0..n.min(20) {
        get();
    }
    let mut idle: Vec<f64> = (0..n).map(|_| get()).collect();
    let rss_idle = rss_kib(server.pid(), "VmRSS:");

    let r = me.post("/count/start", &[("sample", "BENCH"), ("target", "200")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let mut busy = Vec::new();
    let mut rss_count = 0;
    let mut counted = 0;
    while busy.len() < n {
        let p = me.progress();
        if p["phase"] != "running" {
            break;
        }
        counted = p["counted"].as_u64().unwrap_or(0);
        for _ in 0..10 {
            busy.push(get());
            std::thread::sleep(Duration::from_millis(20));
        }
        rss_count = rss_count.max(rss_kib(server.pid(), "VmRSS:"));
    }
    assert!(
        !busy.is_empty(),
        "the count ended before a request was timed"
    );
    let hwm = rss_kib(server.pid(), "VmHWM:");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "serve: GET / latency, {} ({}), release binary",
        cpu,
        if one_core {
            "server pinned to core 0"
        } else {
            "taskset missing: not pinned"
        }
    );
    println!("  state            n    p50 ms   p95 ms   max ms");
    for (name, v) in [("idle", &mut idle), ("during a count", &mut busy)] {
        let len = v.len();
        let (p50, p95) = (percentile(v, 0.5), percentile(v, 0.95));
        let max = v.iter().copied().fold(0.0, f64::max);
        println!("  {name:<15} {len:>4} {p50:>9.2} {p95:>8.2} {max:>8.2}");
    }
    println!(
        "  resident memory: idle {:.1} MiB, during the count {:.1} MiB (peak {:.1} MiB); {} cells counted while timed",
        rss_idle as f64 / 1024.0,
        rss_count as f64 / 1024.0,
        hwm as f64 / 1024.0,
        counted
    );
}
