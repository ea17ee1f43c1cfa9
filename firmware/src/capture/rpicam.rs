//! The Raspberry Pi camera module through a supervised `rpicam-vid` child process.
//!
//! `rpicam-vid -t 0 -n --codec mjpeg --width W --height H --framerate F -o -` streams MJPEG on stdout; a
//! reader thread splits it into JPEGs ([`super::mjpeg::Splitter`]) and hands them over a small channel; a
//! second thread keeps the last lines of the program's stderr for error messages. On Bullseye-era systems
//! the program is `libcamera-vid`, tried when `rpicam-vid` is not installed.
//!
//! Supervision: when the child exits (camera cable pulled, libcamera crash) the next
//! [`Camera::capture`] reports [`CaptureError::Disconnected`] with the exit status and its last log
//! lines, and the capture after that starts a fresh child. The run loop's back-off decides how often.
//! Needs no cargo feature: only `std::process`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::mjpeg::Splitter;
use super::{Camera, CameraConfig, CaptureError};
use crate::frame::Frame;

/// Programs tried in order when none is configured.
const PROGRAMS: [&str; 2] = ["rpicam-vid", "libcamera-vid"];

enum Msg {
    Jpeg(Vec<u8>),
    /// The stream ended: cleanly (`None`) or with a read error.
    Eof(Option<std::io::Error>),
}

struct Running {
    child: Child,
    rx: Receiver<Msg>,
    log: Arc<Mutex<VecDeque<String>>>,
    program: String,
}

/// A camera-program child process, restarted on demand.
pub struct RpiCam {
    config: CameraConfig,
    running: Option<Running>,
    frames: u64,
    starts: u32,
}

impl std::fmt::Debug for RpiCam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpiCam")
            .field("config", &self.config)
            .field("running", &self.running.as_ref().map(|r| r.child.id()))
            .field("frames", &self.frames)
            .finish()
    }
}

impl RpiCam {
    /// Prepares the camera; the child starts on the first capture.
    pub fn new(config: CameraConfig) -> Self {
        RpiCam {
            config,
            running: None,
            frames: 0,
            starts: 0,
        }
    }

    /// How many times a child was started (1 + restarts).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The arguments passed to the camera program.
    pub fn args(&self) -> Vec<String> {
        let c = &self.config;
        let mut a: Vec<String> = [
            "-t",
            "0",
            "-n",
            "--codec",
            "mjpeg",
            "--width",
            &c.width.to_string(),
            "--height",
            &c.height.to_string(),
            "--framerate",
            &c.framerate.to_string(),
            "-o",
            "-",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(c.extra_args.iter().cloned());
        a
    }

    fn start(&mut self) -> Result<(), CaptureError> {
        let programs: Vec<String> = match &self.config.program {
            Some(p) => vec![p.clone()],
            None => PROGRAMS.iter().map(|s| s.to_string()).collect(),
        };
        let args = self.args();
        let mut last_err = None;
        for program in &programs {
            // A path that does not exist is "not installed" too. Checked up front because some spawners
            // (e.g. qemu-user running this binary) report the failed exec as a started-then-dead child.
            if program.contains('/') && !std::path::Path::new(program).exists() {
                last_err = Some(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{program}: no such file"),
                ));
                continue;
            }
            let spawned = Command::new(program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The spawn error does not name the program: say which one was not found.
                    last_err = Some(std::io::Error::new(e.kind(), format!("{program}: {e}")));
                    continue;
                }
                Err(e) => {
                    return Err(CaptureError::Disconnected {
                        backend: "rpicam",
                        reason: format!("cannot start {program}"),
                        source: Some(e),
                    })
                }
            };
            let (tx, rx) = sync_channel(2);
            let log = Arc::new(Mutex::new(VecDeque::new()));
            if let Some(mut out) = child.stdout.take() {
                std::thread::spawn(move || {
                    let mut splitter = Splitter::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    let why = loop {
                        match out.read(&mut buf) {
                            Ok(0) => break None,
                            Ok(n) => {
                                for jpeg in splitter.push(&buf[..n]) {
                                    match tx.try_send(Msg::Jpeg(jpeg)) {
                                        // A slow consumer: drop the newest; flush() drains the old ones.
                                        Ok(()) | Err(TrySendError::Full(_)) => {}
                                        Err(TrySendError::Disconnected(_)) => return,
                                    }
                                }
                            }
                            Err(e) => break Some(e),
                        }
                    };
                    let _ = tx.send(Msg::Eof(why));
                });
            }
            if let Some(err) = child.stderr.take() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        if let Ok(mut l) = log.lock() {
                            if l.len() == 8 {
                                l.pop_front();
                            }
                            l.push_back(line);
                        }
                    }
                });
            }
            self.starts += 1;
            self.running = Some(Running {
                child,
                rx,
                log,
                program: program.clone(),
            });
            return Ok(());
        }
        Err(CaptureError::NotInstalled {
            programs,
            source: last_err.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no camera program configured")
            }),
        })
    }

    fn stop(&mut self) -> String {
        let Some(mut r) = self.running.take() else {
            return String::new();
        };
        let _ = r.child.kill();
        let status = r
            .child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let log: Vec<String> = r
            .log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        format!(
            "{} exited ({status}); last log: {}",
            r.program,
            log.join(" | ")
        )
    }
}

impl Drop for RpiCam {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Camera for RpiCam {
    type Error = CaptureError;

    fn capture(&mut self) -> Result<Frame, CaptureError> {
        if self.running.is_none() {
            self.start()?;
        }
        let timeout = Duration::from_millis(self.config.timeout_ms.max(1));
        let msg = match &self.running {
            Some(r) => r.rx.recv_timeout(timeout),
            None => Err(RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Jpeg(bytes)) => {
                self.frames += 1;
                Frame::decode(&bytes).map_err(|source| CaptureError::Undecodable {
                    backend: "rpicam",
                    frame: self.frames - 1,
                    source,
                })
            }
            Ok(Msg::Eof(why)) => {
                // Give the child a moment to finish writing its last log line.
                std::thread::sleep(Duration::from_millis(50));
                let status = self.stop();
                let what = if why.is_some() {
                    "read error"
                } else {
                    "end of stream"
                };
                Err(CaptureError::Disconnected {
                    backend: "rpicam",
                    reason: format!("{what}: {status}"),
                    source: why,
                })
            }
            Err(RecvTimeoutError::Timeout) => Err(CaptureError::Timeout {
                backend: "rpicam",
                ms: self.config.timeout_ms,
            }),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.stop();
                Err(CaptureError::Disconnected {
                    backend: "rpicam",
                    reason: status,
                    source: None,
                })
            }
        }
    }

    fn flush(&mut self) -> Result<(), CaptureError> {
        let mut eof = false;
        if let Some(r) = &self.running {
            while let Ok(m) = r.rx.try_recv() {
                if let Msg::Eof(_) = m {
                    eof = true;
                }
            }
        }
        if eof {
            let status = self.stop();
            return Err(CaptureError::Disconnected {
                backend: "rpicam",
                reason: status,
                source: None,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::{Error, ErrorKind};

    fn smear() -> String {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../samples/smears/BloodImage_00001.jpg"
        )
        .to_string()
    }

    /// A script that ignores rpicam's arguments: written to a file and run as the "program".
    fn script_program(body: &str, tag: &str) -> String {
        let p = std::env::temp_dir().join(format!("leuko-rpicam-{}-{tag}.sh", std::process::id()));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn streams_frames_then_restarts_the_child_after_it_exits() {
        let prog = script_program(&format!("cat {0} {0}; echo bye >&2", smear()), "restart");
        let mut cam = RpiCam::new(CameraConfig {
            program: Some(prog),
            ..CameraConfig::default()
        });
        assert!(cam.args().contains(&"mjpeg".to_string()));
        for _ in 0..2 {
            assert_eq!(cam.capture().unwrap().width(), 640);
        }
        let err = cam.capture().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
        assert!(err.to_string().contains("bye"), "{err}");
        // Comes back: a fresh child.
        assert_eq!(cam.capture().unwrap().height(), 480);
        assert_eq!(cam.starts(), 2);
    }

    #[test]
    fn silent_camera_times_out() {
        let prog = script_program("sleep 5", "silent");
        let mut cam = RpiCam::new(CameraConfig {
            program: Some(prog),
            timeout_ms: 100,
            ..CameraConfig::default()
        });
        assert_eq!(cam.capture().unwrap_err().kind(), ErrorKind::Timeout);
    }

    #[test]
    fn missing_program_says_what_to_install() {
        let mut cam = RpiCam::new(CameraConfig {
            program: Some("/nonexistent/rpicam-vid".into()),
            ..CameraConfig::default()
        });
        let err = cam.capture().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("rpicam-apps"), "{err}");
    }
}
