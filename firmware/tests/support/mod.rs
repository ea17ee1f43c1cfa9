//! `leukoscope serve` as a test drives it: the binary on a free port of loopback with the simulator, and
//! a small HTTP client that keeps its session cookie and CSRF token (no redirects followed, no status an
//! error, so each test sees exactly what the server answered).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const USER: &str = "ana";
pub const PASSWORD: &str = "correct horse 1";

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leukoscope"))
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leuko-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Adds an operator with `leukoscope user add` (password on stdin).
pub fn add_user(data: &Path, name: &str, password: &str) {
    use std::io::Write;
    let mut c = bin()
        .args(["user", "add", name, "--data"])
        .arg(data)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(c.stdin.take().unwrap(), "{password}").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its data folder.
    pub data: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `serve --sim --data DATA --listen LISTEN --refocus-every 0` plus `extra`.
    pub fn start(data: &Path, listen: &str, extra: &[&str]) -> Server {
        Server::start_with(bin(), data, listen, extra)
    }

    /// [`Server::start`] with the command given (e.g. under `taskset`).
    pub fn start_with(mut cmd: Command, data: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = cmd
            .args(["serve", "--sim", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .args(if extra.contains(&"--refocus-every") {
                &[][..]
            } else {
                &["--refocus-every", "0"][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("the server ended before listening: {}", log.lock().unwrap());
            };
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.rsplit(':').next().unwrap().to_string();
            }
        };
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = keep.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data: data.to_owned(),
            log,
        }
    }

    /// What the server wrote on stderr.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// A client signed in as [`USER`].
    pub fn signed_in(&self) -> Client {
        let mut c = self.client();
        let r = c.sign_in(USER, PASSWORD);
        assert_eq!(r.status, 303, "sign-in: {}", r.body);
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub content_type: String,
    pub cookies: Vec<String>,
}

/// A browser in miniature: one session cookie, one CSRF token.
pub struct Client {
    agent: ureq::Agent,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

/// The first `name="csrf" value="..."` of a page.
pub fn csrf_of(page: &str) -> Option<String> {
    let at = page.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(page[at..].split('"').next()?.to_string())
}

impl Client {
    pub fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client {
            agent,
            base: base.to_string(),
            cookie: None,
            csrf: None,
        }
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut r = r.expect("the server answers");
        let h = r.headers();
        let location = h
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let content_type = h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let cookies = h
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect();
        Answer {
            status: r.status().as_u16(),
            body: r
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default(),
            location,
            content_type,
            cookies,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        Self::answer(req.call())
    }

    /// The status of a GET, its body not read (a stream never ends).
    pub fn status(&self, path: &str) -> u16 {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        req.call().unwrap().status().as_u16()
    }

    /// The raw bytes of a GET.
    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        let mut r = req.call().unwrap();
        let s = r.status().as_u16();
        (
            s,
            r.body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .unwrap(),
        )
    }

    /// POSTs a form with exactly these fields (no CSRF token added).
    pub fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        Self::answer(req.send_form(fields.iter().copied()))
    }

    /// POSTs a body as it is, with a content type.
    pub fn post_body(&self, path: &str, content_type: &str, body: &[u8]) -> Answer {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        Self::answer(req.send(body))
    }

    /// POSTs a form with this session's CSRF token.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let csrf = self.csrf.clone().expect("signed in");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all)
    }

    /// Signs in (the sign-in page's token and cookie, then the form); keeps the session.
    pub fn sign_in(&mut self, user: &str, password: &str) -> Answer {
        let page = self.get("/signin");
        let pre = csrf_of(&page.body).expect("a token on the sign-in page");
        let pre_cookie = page
            .cookies
            .iter()
            .find_map(|c| {
                c.split(';')
                    .next()
                    .filter(|kv| kv.starts_with("lk_signin="))
            })
            .expect("the sign-in cookie")
            .to_string();
        let r = Self::answer(
            self.agent
                .post(format!("{}/signin", self.base))
                .header("Cookie", &pre_cookie)
                .send_form([
                    ("csrf", pre.as_str()),
                    ("user", user),
                    ("password", password),
                ]),
        );
        if let Some(s) = r.cookies.iter().find_map(|c| {
            c.split(';')
                .next()
                .filter(|kv| kv.starts_with("lk_session="))
        }) {
            self.cookie = Some(s.to_string());
            self.csrf = csrf_of(&self.get("/").body);
        }
        r
    }

    /// The progress JSON.
    pub fn progress(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/api/progress").body).unwrap()
    }

    /// Waits until the running count is no longer running; returns its progress.
    pub fn wait_count(&self, limit: Duration) -> serde_json::Value {
        let t = Instant::now();
        loop {
            let p = self.progress();
            if !matches!(p["phase"].as_str(), Some("running" | "stopping")) {
                return p;
            }
            assert!(
                t.elapsed() < limit,
                "the count did not end in {limit:?}: {p}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The JSON report of a sample.
    pub fn report(&self, sample: &str) -> serde_json::Value {
        let r = self.get(&format!("/counts/{sample}/report/json"));
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }
}

/// `(frame, index)` of the cell tiles of a review page, in page order, with the group each is in.
pub fn tiles(page: &str) -> Vec<(String, u64, u32)> {
    let mut out = Vec::new();
    let mut group = String::new();
    for part in page.split('<') {
        if let Some(g) = part.strip_prefix("div class=\"cells\" id=\"g-") {
            group = g.split('"').next().unwrap().to_string();
        } else if part.starts_with("h2>Not white cells") {
            group = "NOT_A_WHITE_CELL".into();
        } else if let Some(rest) = part.strip_prefix("figure class=\"cell") {
            let id = rest
                .split("id=\"c-")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let (f, i) = id.split_once('-').unwrap();
            out.push((group.clone(), f.parse().unwrap(), i.parse().unwrap()));
        }
    }
    out
}
