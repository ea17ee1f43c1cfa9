//! Who may do what: operators (`DATA/users`, argon2id password hashes), signed-in sessions (a random
//! token in an HttpOnly, SameSite=Strict cookie), a CSRF token per session for every form, and sign-in
//! throttling.
//!
//! The users file holds one operator per line, `name:<PHC string>` (the argon2 crate's
//! `$argon2id$v=19$m=…,t=…,p=…$salt$hash`); it is written whole to a temporary file, fsync'd and renamed,
//! so a power cut leaves the old or the new file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;

/// The users file inside the data folder.
pub const USERS_FILE: &str = "users";

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// How long a sign-in lasts without use.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// Failed sign-ins for one name or one address before it must wait.
pub const FREE_FAILURES: u32 = 5;

/// The longest wait after repeated failures.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// Why a user could not be added or read.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is unusable.
    #[error("user name {0:?}: use 1 to 32 letters, digits, '.', '_' or '-'")]
    BadName(String),
    /// The password is too short.
    #[error("the password must have at least {MIN_PASSWORD} characters")]
    ShortPassword,
    /// The name is taken.
    #[error("user {0:?} exists already")]
    Exists(String),
    /// No such user.
    #[error("no user {0:?}")]
    Unknown(String),
    /// The users file is damaged.
    #[error("{path}:{line}: not a `name:argon2-hash` line; fix or remove it")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// Hashing failed (it does not, short of memory).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a user name is acceptable.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The operators of one device.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
}

impl Users {
    /// The users of the data folder `data`.
    pub fn new(data: &Path) -> Self {
        Users {
            path: data.join(USERS_FILE),
        }
    }

    /// `(name, hash)` of every user; an absent file is no users.
    pub fn list(&self) -> Result<Vec<(String, String)>, UserError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(UserError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| match l.split_once(':') {
                Some((n, h)) if valid_name(n) && PasswordHash::new(h).is_ok() => {
                    Ok((n.to_string(), h.to_string()))
                }
                _ => Err(UserError::Corrupt {
                    path: self.path.clone(),
                    line: i + 1,
                }),
            })
            .collect()
    }

    /// Adds an operator.
    pub fn add(&self, name: &str, password: &str) -> Result<(), UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName(name.to_string()));
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(UserError::ShortPassword);
        }
        let mut users = self.list()?;
        if users.iter().any(|(n, _)| n == name) {
            return Err(UserError::Exists(name.to_string()));
        }
        users.push((name.to_string(), hash(password)?));
        self.write(&users)
    }

    /// Sets an operator's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        if password.chars().count() < MIN_PASSWORD {
            return Err(UserError::ShortPassword);
        }
        let mut users = self.list()?;
        let entry = users
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| UserError::Unknown(name.to_string()))?;
        entry.1 = hash(password)?;
        self.write(&users)
    }

    /// Removes an operator.
    pub fn remove(&self, name: &str) -> Result<(), UserError> {
        let mut users = self.list()?;
        let before = users.len();
        users.retain(|(n, _)| n != name);
        if users.len() == before {
            return Err(UserError::Unknown(name.to_string()));
        }
        self.write(&users)
    }

    /// Whether `password` is `name`'s. Unknown names take as long as known ones.
    pub fn verify(&self, name: &str, password: &str) -> Result<bool, UserError> {
        let users = self.list()?;
        let known = users
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.clone());
        // Verify against a real hash either way, so the time taken does not say which names exist.
        let h = known.clone().unwrap_or_else(dummy_hash);
        let parsed = PasswordHash::new(&h).map_err(|e| UserError::Hash(e.to_string()))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known.is_some())
    }

    fn write(&self, users: &[(String, String)]) -> Result<(), UserError> {
        let io = |source| UserError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        for (n, h) in users {
            writeln!(f, "{n}:{h}").map_err(io)?;
        }
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

fn hash(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UserError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash("not a password of anyone").unwrap_or_default())
        .clone()
}

/// A random token, URL-safe base64 of 32 bytes.
pub fn token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed-in operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The operator.
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
    last_use: Instant,
}

/// Signed-in sessions (in memory: a restart signs everyone out) and failed sign-ins.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Sessions {
    /// Starts a session for `user`; returns its cookie token.
    pub fn start(&self, user: &str) -> String {
        let t = token();
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.last_use.elapsed() < SESSION_IDLE);
        map.insert(
            t.clone(),
            Session {
                user: user.to_string(),
                csrf: token(),
                last_use: Instant::now(),
            },
        );
        t
    }

    /// The session of a cookie token, if it is live.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.get_mut(token)?;
        if s.last_use.elapsed() >= SESSION_IDLE {
            map.remove(token);
            return None;
        }
        s.last_use = Instant::now();
        Some(s.clone())
    }

    /// Ends a session.
    pub fn end(&self, token: &str) {
        self.by_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    /// How long the keys (a user name, a client address) must still wait before another sign-in
    /// attempt, if at all.
    pub fn wait(&self, keys: &[&str]) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(*k))
            .filter_map(|&(n, at)| lockout(n).checked_sub(at.elapsed()))
            .filter(|d| !d.is_zero())
            .max()
    }

    /// Records a sign-in attempt's result for each key.
    pub fn attempt(&self, keys: &[&str], ok: bool) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if ok {
                map.remove(*k);
            } else {
                let e = map.entry((*k).to_string()).or_insert((0, Instant::now()));
                e.0 = e.0.saturating_add(1);
                e.1 = Instant::now();
            }
        }
    }
}

/// The wait after `n` consecutive failures: none for the first [`FREE_FAILURES`], then 2 s doubling, at
/// most [`MAX_LOCKOUT`].
pub fn lockout(n: u32) -> Duration {
    if n < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (n - FREE_FAILURES).min(16);
    Duration::from_secs(2u64 << exp).min(MAX_LOCKOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_added_verified_and_refused() {
        let dir = std::env::temp_dir().join(format!("lk-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let u = Users::new(&dir);
        u.add("alice", "correct horse").unwrap();
        assert!(u.verify("alice", "correct horse").unwrap());
        assert!(!u.verify("alice", "correct hors").unwrap());
        assert!(!u.verify("bob", "correct horse").unwrap());
        assert!(matches!(
            u.add("alice", "another one"),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            u.add("a b", "another one"),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(
            u.add("bob", "short"),
            Err(UserError::ShortPassword)
        ));
        let text = std::fs::read_to_string(dir.join(USERS_FILE)).unwrap();
        assert!(text.starts_with("alice:$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        u.set_password("alice", "battery staple").unwrap();
        assert!(u.verify("alice", "battery staple").unwrap());
        u.remove("alice").unwrap();
        assert!(!u.verify("alice", "battery staple").unwrap());
        std::fs::write(dir.join(USERS_FILE), "alice:plaintext\n").unwrap();
        assert!(matches!(u.list(), Err(UserError::Corrupt { line: 1, .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_lock_out_increasingly_and_success_clears() {
        let s = Sessions::default();
        for _ in 0..FREE_FAILURES - 1 {
            s.attempt(&["alice"], false);
        }
        assert_eq!(s.wait(&["alice"]), None);
        s.attempt(&["alice"], false);
        let w = s.wait(&["alice", "127.0.0.1"]).unwrap();
        assert!(
            w > Duration::from_secs(1) && w <= Duration::from_secs(2),
            "{w:?}"
        );
        assert_eq!(s.wait(&["bob"]), None);
        s.attempt(&["alice"], true);
        assert_eq!(s.wait(&["alice"]), None);
        assert_eq!(lockout(FREE_FAILURES + 30), MAX_LOCKOUT);
    }

    #[test]
    fn sessions_carry_a_csrf_token_and_end() {
        let s = Sessions::default();
        let t = s.start("alice");
        let got = s.get(&t).unwrap();
        assert_eq!(got.user, "alice");
        assert_ne!(got.csrf, t);
        assert!(s.get("forged").is_none());
        s.end(&t);
        assert!(s.get(&t).is_none());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
