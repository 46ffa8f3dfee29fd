//! Bearer tokens for the admin API. Tokens are random (256 bits), shown
//! once when made, and stored only as their SHA-256 in a tokens file, one
//! per line: `SCOPE sha256:HEX NAME`. A presented token is hashed and
//! compared with every stored hash in constant time. `read` lets a caller
//! list and inspect apps; `deploy` also lets it deploy, roll back and
//! delete.
//!
//! The node reads the file on every admin request ([`TokenFile`]), so a
//! token is added or revoked without a restart; a file that becomes
//! unreadable or malformed refuses every token until it is fixed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest as _;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Deploy,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "deploy" => Some(Scope::Deploy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Deploy => "deploy",
        }
    }
}

/// One stored token.
#[derive(Debug, Clone)]
struct Entry {
    scope: Scope,
    hash: [u8; 32],
    name: String,
}

/// The tokens the node accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Who a request is, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

fn hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new random token.
pub fn generate() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(format!("wo_{}", hex(&b)))
}

/// The tokens-file line that stores `token` with `scope` under `name`.
pub fn line(token: &str, scope: Scope, name: &str) -> String {
    format!("{} sha256:{} {name}", scope.name(), hex(&hash(token)))
}

/// Compares two hashes without stopping at the first difference.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Parses a tokens file's text; errors carry the line number.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut entries = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut parts = l.split_whitespace();
            let (Some(scope), Some(h)) = (parts.next(), parts.next()) else {
                return Err((i + 1, "expected `SCOPE sha256:HEX NAME`".into()));
            };
            // The word is not repeated: a token pasted in its place would
            // reach the log.
            let scope = Scope::parse(scope)
                .ok_or_else(|| (i + 1, "unknown scope: use read or deploy".to_string()))?;
            let hash = h
                .strip_prefix("sha256:")
                .and_then(unhex)
                .ok_or_else(|| (i + 1, "the hash must be sha256: and 64 hex digits (store the hash, not the token: `wasmops node token`)".to_string()))?;
            let name = parts.next().unwrap_or("token").to_string();
            if name == crate::appsdir::OWNER {
                return Err((
                    i + 1,
                    "the name apps-dir is the apps directory's own: give the token another".into(),
                ));
            }
            entries.push(Entry { scope, hash, name });
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a presented token stands for, if any. Every entry is
    /// compared, so the time taken does not tell which one matched.
    pub fn check(&self, token: &str) -> Option<Caller> {
        let h = hash(token);
        let mut found = None;
        for e in &self.entries {
            if same(&e.hash, &h) && found.is_none() {
                found = Some(Caller {
                    name: e.name.clone(),
                    scope: e.scope,
                });
            }
        }
        found
    }
}

/// The tokens of a running node: its tokens file, read on every admin
/// request and parsed again when its bytes changed (the file is small and
/// admin requests are few; comparing bytes, unlike times, misses no edit).
#[derive(Debug)]
pub struct TokenFile {
    path: Option<PathBuf>,
    state: Mutex<Snapshot>,
}

/// The file's bytes as last read, and what they gave.
type Snapshot = (Option<Vec<u8>>, Result<Arc<Tokens>, String>);

impl TokenFile {
    /// Reads `path` now; an unreadable or malformed file is an error, so a
    /// node does not start with it.
    pub fn open(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        let tokens = parse_file(path, &bytes)?;
        Ok(Self {
            path: Some(path.to_owned()),
            state: Mutex::new((Some(bytes), Ok(Arc::new(tokens)))),
        })
    }

    /// No tokens file: every request is refused.
    pub fn none() -> Self {
        Self {
            path: None,
            state: Mutex::new((None, Ok(Arc::new(Tokens::default())))),
        }
    }

    /// The tokens as the file is now, or why there are none (the file went
    /// missing or has a malformed line: then no token is accepted, so that
    /// a botched revocation does not leave the revoked token working).
    pub fn current(&self) -> Result<Arc<Tokens>, String> {
        let Some(path) = &self.path else {
            return self
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .clone();
        };
        let read = std::fs::read(path);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(bytes) if state.0.as_deref() == Some(&bytes[..]) => {}
            Ok(bytes) => {
                state.1 = parse_file(path, &bytes).map(Arc::new);
                state.0 = Some(bytes);
                match &state.1 {
                    Ok(t) => {
                        tracing::info!(file = %path.display(), tokens = t.entries.len(), "the tokens file changed: read again")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the tokens file changed and cannot be used: every token is refused until it is fixed")
                    }
                }
            }
            Err(e) => {
                if state.0.is_some() {
                    tracing::error!(file = %path.display(), error = %e, "the tokens file cannot be read: every token is refused until it is back");
                }
                state.0 = None;
                state.1 = Err(format!(
                    "cannot read the tokens file {}: {e}",
                    path.display()
                ));
            }
        }
        state.1.clone()
    }
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<Tokens, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
    Tokens::parse(text).map_err(|(n, why)| format!("{}:{n}: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_checked_by_scope() {
        let deploy = generate().unwrap();
        let read = generate().unwrap();
        assert_ne!(deploy, read);
        let file = format!(
            "# tokens\n{}\n{}\n",
            line(&deploy, Scope::Deploy, "ci"),
            line(&read, Scope::Read, "dash")
        );
        assert!(!file.contains(&deploy[3..]), "only hashes are stored");
        let t = Tokens::parse(&file).unwrap();
        assert_eq!(
            t.check(&deploy).unwrap(),
            Caller {
                name: "ci".into(),
                scope: Scope::Deploy
            }
        );
        assert_eq!(t.check(&read).unwrap().scope, Scope::Read);
        assert!(t.check("wo_nope").is_none());
        assert!(t.check("").is_none());
        assert_eq!(Tokens::parse("admin sha256:00 x").unwrap_err().0, 1);
        // The apps directory's own name is not a token's.
        let hex = "0".repeat(64);
        assert!(Tokens::parse(&format!("deploy sha256:{hex} ci")).is_ok());
        assert_eq!(
            Tokens::parse(&format!("# c\ndeploy sha256:{hex} apps-dir"))
                .unwrap_err()
                .0,
            2
        );
        assert!(
            Tokens::parse(&format!("read {deploy} x")).is_err(),
            "a bare token is refused"
        );
    }

    #[test]
    fn the_tokens_file_is_read_again_when_it_changes_and_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let (a, b) = (generate().unwrap(), generate().unwrap());
        std::fs::write(&path, line(&a, Scope::Deploy, "a") + "\n").unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert!(file.current().unwrap().check(&a).is_some());
        assert!(file.current().unwrap().check(&b).is_none());

        // Appended (as `wasmops node token` does): taken without a restart.
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n",
                line(&a, Scope::Deploy, "a"),
                line(&b, Scope::Read, "b")
            ),
        )
        .unwrap();
        assert_eq!(
            file.current().unwrap().check(&b).unwrap().scope,
            Scope::Read
        );

        // Revoked by a file put in place of the old one.
        let next = dir.path().join("tokens.new");
        std::fs::write(&next, line(&b, Scope::Read, "b") + "\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        let now = file.current().unwrap();
        assert!(now.check(&a).is_none(), "a revoked token is refused");
        assert!(now.check(&b).is_some());

        // Malformed, then gone: nothing is accepted, and the error names
        // the line, never a token.
        std::fs::write(
            &path,
            format!("{}\nread {b} b\n", line(&b, Scope::Read, "b")),
        )
        .unwrap();
        let e = file.current().unwrap_err();
        assert!(e.contains(":2:") && !e.contains(&b[3..]), "{e}");
        std::fs::remove_file(&path).unwrap();
        assert!(file.current().is_err());
        std::fs::write(&path, line(&a, Scope::Deploy, "a") + "\n").unwrap();
        assert!(
            file.current().unwrap().check(&a).is_some(),
            "fixed: accepted again"
        );
    }
}
