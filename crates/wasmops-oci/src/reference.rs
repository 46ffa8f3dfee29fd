//! Registry references (`[HOST[:PORT]/]REPOSITORY[:TAG][@sha256:HEX]`) with
//! Docker's defaults: no host means Docker Hub, and a one-part repository
//! on Docker Hub lives under `library/`.

use std::fmt;

use crate::{OciError, valid_digest};

pub(crate) const DOCKER_HUB: &str = "docker.io";

/// A reference to an artifact in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io` by default).
    pub registry: String,
    /// `path/to/repo`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference the way Docker does.
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let bad = |why: &'static str| OciError::BadReference(s.to_string(), why);
        if s.is_empty() || s.len() > 4096 {
            return Err(bad(
                "expected [HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]",
            ));
        }
        if s.contains("://") {
            return Err(bad(
                "a reference has no scheme: write HOST/REPOSITORY:TAG (plain HTTP is used for localhost and 127.0.0.1, and for hosts named with --insecure-registry)",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(bad("the digest must be sha256:<64 lowercase hex>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // The tag follows the last `:` after the last `/`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !crate::valid_tag(t) {
                    return Err(bad(
                        "a tag is 1-128 of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
                    ));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad("the registry host is not a valid host[:port]"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty()
            || repository.len() > 255
            || !repository.split('/').all(valid_path_component)
        {
            return Err(bad(
                "a repository is lowercase letters and digits in `/`-separated parts, joined by `.`, `_`, `__` or `-`",
            ));
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Whether `s` names a registry explicitly (`host.domain/...`,
    /// `host:port/...` or `localhost/...`), so it cannot be a file path
    /// someone meant.
    pub fn looks_like_registry(s: &str) -> bool {
        let first = s.split('/').next().unwrap_or("");
        // `dir.v2/app.wasm` is a missing file, not a repository `app.wasm`.
        let file_like = [".wasm", ".wat", ".toml"].iter().any(|e| s.ends_with(e));
        s.contains('/')
            && !file_like
            && (first == "localhost"
                || (first.contains(':') && !first.contains('\\'))
                || (first.contains('.') && !first.starts_with('.') && first.len() > 2))
            && Reference::parse(s).is_ok()
            && !std::path::Path::new(s).exists()
    }

    /// The tag or digest to ask the registry for (`latest` by default).
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host to connect to (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, as cosign names the signed identity.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at another tag.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at a digest.
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        if self.tag.is_none() && self.digest.is_none() {
            f.write_str(":latest")?;
        }
        Ok(())
    }
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'a'..=b'z' | b'0'..=b'9' => i += 1,
            b'.' | b'_' | b'-' => {
                // One `.`, one or two `_`, or any run of `-`.
                let start = i;
                while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
                    i += 1;
                }
                let sep = &c[start..i];
                if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker() {
        let r = Reference::parse("127.0.0.1:5000/apps/hello:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "apps/hello", Some("v1"))
        );
        assert_eq!(r.reference(), "v1");
        let r = Reference::parse("hello").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/hello");
        assert_eq!(r.reference(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let d = crate::digest(b"x");
        let r = Reference::parse(&format!("localhost/a/b:t@{d}")).unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.reference(), d);
        assert_eq!(r.to_string(), format!("localhost/a/b:t@{d}"));
        let r = Reference::parse("ghcr.io/org/app").unwrap();
        assert_eq!(r.to_string(), "ghcr.io/org/app:latest");
        assert_eq!(r.repository_name(), "ghcr.io/org/app");
        for bad in [
            "",
            "https://ghcr.io/x",
            "ghcr.io/UPPER/x",
            "ghcr.io/x:-tag",
            "ghcr.io/x@sha256:abc",
            "ghcr.io//x",
            "ghcr.io/x/",
            "ghcr.io/a..b",
            "h st/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_looking_names() {
        assert!(Reference::looks_like_registry("127.0.0.1:5000/x:1"));
        assert!(Reference::looks_like_registry("ghcr.io/org/x"));
        assert!(Reference::looks_like_registry("localhost/x"));
        assert!(!Reference::looks_like_registry("hello.wasm"));
        assert!(!Reference::looks_like_registry("./dir/x.wasm"));
        assert!(!Reference::looks_like_registry("target/x.wasm"));
        assert!(!Reference::looks_like_registry("build.out/x.wasm"));
        assert!(!Reference::looks_like_registry("my.app/wasmops.toml"));
        assert!(Reference::looks_like_registry("ghcr.io/org/app.wasm:1"));
    }
}
