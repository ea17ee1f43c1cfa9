//! Every argument of every command under the same hostile test, as an outsider would try them: empty,
//! negative, overflowing, not-a-number, absurd sizes, devices (`/dev/zero`), folders, missing paths, a
//! 100 kB string and bytes that are not UTF-8. Each invocation must end on its own within a bound, with
//! a clear `error:` or success, never a panic, a signal or more memory than the address-space limit; and
//! a closed stdout (`| head -1`) ends a command quietly.
//!
//! The commands and their options are read from the binary's own `--help`, so a new argument is under
//! this test the day it is added.
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_leukoscope");
/// Wall-clock bound for one invocation (a debug build; the release binary is ten times faster).
const BOUND: Duration = Duration::from_secs(60);
/// Address-space limit for each invocation: a command asked for an absurd size must refuse, not allocate.
const MEMORY_KB: u64 = 4 << 20;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

/// The working folder of every invocation: relative paths (`-`, `0`) land there, not in the checkout.
fn cwd() -> PathBuf {
    let d = std::env::temp_dir().join(format!("leuko-hostile-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leuko-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The values every argument gets.
fn hostile_values(dir: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "",
        "0",
        "-1",
        "4294967295",
        "4294967296",
        "99999999999999999999999999",
        "1e309",
        "NaN",
        "0x0",
        "4294967295x4294967295",
        "30000x30000",
        "1x",
        "-",
        "/dev/zero",
        "/dev/null",
        // The whole of /proc (a walk of `/` the same way; /proc cannot be written to by `--out`).
        "/proc",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    // A path that cannot exist, even for root: under a regular file.
    let plain = dir.join("plain.txt");
    std::fs::write(&plain, "not a folder").unwrap();
    v.push(plain.join("missing").into_os_string());
    // A pipe nobody writes to: opening it for reading would wait for ever.
    let fifo = dir.join("fifo.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    v.push(fifo.into_os_string());
    v.push(dir.as_os_str().to_owned()); // a folder
    v.push(OsString::from("a".repeat(100_000)));
    v.push(OsString::from_vec(vec![
        b'f', 0xFF, 0xFE, b'.', b'p', b'n', b'g',
    ]));
    v
}

/// `(command, options taking a value, flags)` read from `--help`.
fn commands() -> Vec<(String, Vec<String>, Vec<String>)> {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&["--help"]);
    let names: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect();
    names
        .into_iter()
        .map(|c| {
            let (mut options, mut flags) = (Vec::new(), Vec::new());
            for line in help(&[&c, "--help"]).lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let Some(long) = words.iter().find(|w| w.starts_with("--")) else {
                    continue;
                };
                let long = long.trim_end_matches(',').to_string();
                if long == "--help" || long == "--version" {
                    continue;
                }
                let at = words
                    .iter()
                    .position(|w| w.trim_end_matches(',') == long)
                    .unwrap();
                if words.get(at + 1).is_some_and(|w| w.starts_with('<')) {
                    options.push(long);
                } else {
                    flags.push(long);
                }
            }
            (c, options, flags)
        })
        .collect()
}

/// A valid, quick invocation of each command (`None` for the positional inputs' place).
fn base(command: &str, dir: &Path, journal: &Path, n: usize) -> Vec<OsString> {
    let s = |p: PathBuf| p.into_os_string();
    let fresh = |name: &str| s(dir.join(format!("{n}-{name}")));
    let smear = s(samples().join("smears/BloodImage_00001.jpg"));
    let v: Vec<OsString> = match command {
        "classify" => vec!["classify".into(), s(samples().join("cells/NEUTROPHIL"))],
        "count" => vec!["count".into(), "--target".into(), "1".into(), smear],
        "segment" => vec!["segment".into(), "--out".into(), fresh("seg"), smear],
        "run" => vec![
            "run".into(),
            "--sim".into(),
            "--slide".into(),
            s(samples().join("smears")),
            "--grid".into(),
            "1x1".into(),
            "--target".into(),
            "1".into(),
            "--journal".into(),
            fresh("run.journal"),
        ],
        "report" => vec!["report".into(), "--journal".into(), journal.into()],
        "adapt" => vec![
            "adapt".into(),
            "--cells".into(),
            s(samples().join("cells")),
            "--out".into(),
            fresh("site.onnx"),
        ],
        // A server does not end on its own: it passes once it says it is listening (see `run`).
        "serve" => vec![
            "serve".into(),
            "--sim".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--refocus-every".into(),
            "0".into(),
            "--data".into(),
            fresh("serve-data"),
        ],
        "user" => vec![
            "user".into(),
            "list".into(),
            "--data".into(),
            fresh("user-data"),
        ],
        other => {
            panic!("a command this test does not know: {other}; give it a base invocation here")
        }
    };
    v
}

/// `args` with `option` set to `value` (replaced where the base has it, added where not).
fn with(mut args: Vec<OsString>, option: &str, value: OsString) -> Vec<OsString> {
    match args.iter().position(|a| a == option) {
        Some(i) => args[i + 1] = value,
        None => {
            args.push(option.into());
            args.push(value);
        }
    }
    args
}

/// The base's positional inputs replaced by `value`.
fn with_input(mut args: Vec<OsString>, value: OsString) -> Option<Vec<OsString>> {
    let takes_inputs = matches!(args[0].to_str(), Some("classify" | "count" | "segment"));
    if !takes_inputs {
        return None;
    }
    *args.last_mut().unwrap() = value;
    Some(args)
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    took: Duration,
    timed_out: bool,
}

fn run(args: &[OsString]) -> Outcome {
    let t = Instant::now();
    // ulimit -v bounds what the command may allocate: an absurd request fails instead of swapping.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_KB} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .current_dir(cwd())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // `serve` runs until stopped: once it says it listens, it took its arguments; it is then stopped.
    let listening = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heard = std::sync::Arc::clone(&listening);
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            if line.starts_with("listening on http://") {
                heard.store(true, Ordering::Relaxed);
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if listening.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome {
                code: Some(0),
                stderr: reader.join().unwrap(),
                took: t.elapsed(),
                timed_out: false,
            };
        }
        if t.elapsed() > BOUND {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        stderr: reader.join().unwrap(),
        took: t.elapsed(),
        timed_out,
    }
}

fn shown(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.len() > 40 {
                format!("<{} bytes>", s.len())
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_argument_of_every_command_survives_hostile_values() {
    let dir = scratch("args");
    // A real journal for `report`.
    let journal = dir.join("base.journal");
    let made = run(&base("run", &dir, &journal, 0)
        .into_iter()
        .map(|a| {
            if a == dir.join("0-run.journal").as_os_str() {
                journal.clone().into()
            } else {
                a
            }
        })
        .collect::<Vec<_>>());
    assert_eq!(made.code, Some(0), "{}", made.stderr);

    let values = hostile_values(&dir);
    let mut cases: Vec<Vec<OsString>> = Vec::new();
    let commands = commands();
    assert!(
        commands.len() >= 6,
        "{:?}",
        commands.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    for (command, options, flags) in &commands {
        let fresh = || base(command, &dir, &journal, cases.len() + 1);
        let b = fresh();
        let ok = run(&b);
        assert_eq!(
            ok.code,
            Some(0),
            "the base invocation {} fails: {}",
            shown(&b),
            ok.stderr
        );
        for option in options {
            // Writing a report into a pipe waits for its reader, as it should: not hostile for outputs.
            let output = matches!(option.as_str(), "--csv" | "--html" | "--out");
            for v in values
                .iter()
                .filter(|v| !(output && v.to_string_lossy().ends_with("fifo.png")))
            {
                let n = cases.len() + 1;
                cases.push(with(base(command, &dir, &journal, n), option, v.clone()));
            }
        }
        for flag in flags {
            let mut a = base(command, &dir, &journal, cases.len() + 1);
            a.push(format!("{flag}=x").into());
            cases.push(a);
        }
        for v in &values {
            if let Some(a) = with_input(base(command, &dir, &journal, cases.len() + 1), v.clone()) {
                cases.push(a);
            }
        }
    }

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let slowest = Mutex::new((Duration::ZERO, String::new()));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(args) = cases.get(i) else { break };
                let o = run(args);
                let what = shown(args);
                let mut bad = Vec::new();
                if o.timed_out {
                    bad.push(format!("still running after {BOUND:?}"));
                }
                let run_stopped = args[0] == "run" && !o.stderr.trim().is_empty();
                match o.code {
                    Some(0) => {}
                    Some(1 | 2) if o.stderr.contains("error") => {}
                    // `run`'s own outcomes: 2 the slide ran out, 3 paused for a person; each says why.
                    Some(2 | 3) if run_stopped => {}
                    Some(c) => bad.push(format!("exit code {c}")),
                    None => bad.push("killed by a signal".into()),
                }
                if o.stderr.contains("panicked") || o.stderr.contains("RUST_BACKTRACE") {
                    bad.push("a panic".into());
                }
                if !bad.is_empty() {
                    let tail: String = o
                        .stderr
                        .chars()
                        .rev()
                        .take(600)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{what}: {}\n{tail}", bad.join(", ")));
                }
                let mut sl = slowest.lock().unwrap();
                if o.took > sl.0 {
                    *sl = (o.took, what);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let (took, what) = slowest.into_inner().unwrap();
    eprintln!(
        "{} hostile invocations of {} commands; slowest {took:.1?}: {what}",
        cases.len(),
        commands.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = scratch("pipe");
    let journal = dir.join("j.journal");
    let cells = samples().join("cells").into_os_string();
    let smears = samples().join("smears").into_os_string();
    let cases: Vec<Vec<OsString>> = vec![
        vec!["classify".into(), cells.clone()],
        vec!["classify".into(), "--json".into(), cells],
        vec![
            "count".into(),
            "--target".into(),
            "3".into(),
            smears.clone(),
        ],
        vec![
            "count".into(),
            "--json".into(),
            "--target".into(),
            "3".into(),
            smears,
        ],
        vec![
            "run".into(),
            "--sim".into(),
            "--slide".into(),
            samples().join("smears").into_os_string(),
            "--grid".into(),
            "2x1".into(),
            "--journal".into(),
            journal.clone().into(),
        ],
        vec!["report".into(), "--journal".into(), journal.into()],
        vec!["--help".into()],
    ];
    for args in &cases {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line (as `head -1` does), then close the pipe.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        drop(out);
        let done = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert!(
            !first.is_empty(),
            "{}: printed nothing: {stderr}",
            shown(args)
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{}: {stderr}",
            shown(args)
        );
        assert!(
            done.status.code().is_some(),
            "{}: killed by a signal",
            shown(args)
        );
    }
}
