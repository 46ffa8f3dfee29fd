//! Bearer tokens for the admin API. Tokens are random (256 bits), shown
//! once when made, and stored only as their SHA-256 in a tokens file, one
//! per line: `SCOPE sha256:HEX NAME`. A presented token is hashed and
//! compared with every stored hash in constant time. `read` lets a caller
//! list and inspect apps; `deploy` also lets it deploy, roll back and
//! delete.

use std::path::Path;

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
    /// Reads a tokens file; a malformed line is an error naming it (a token
    /// itself, never).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|(n, why)| format!("{}:{n}: {why}", path.display()))
    }

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
            let scope = Scope::parse(scope).ok_or_else(|| {
                (
                    i + 1,
                    format!("unknown scope `{scope}`: use read or deploy"),
                )
            })?;
            let hash = h
                .strip_prefix("sha256:")
                .and_then(unhex)
                .ok_or_else(|| (i + 1, "the hash must be sha256: and 64 hex digits (store the hash, not the token: `wasmops node token`)".to_string()))?;
            let name = parts.next().unwrap_or("token").to_string();
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
        assert!(
            Tokens::parse(&format!("read {deploy} x")).is_err(),
            "a bare token is refused"
        );
    }
}
