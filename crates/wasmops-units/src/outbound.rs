//! The grammar of outbound HTTP grants (`allowed_outbound_hosts` in a
//! manifest, `--allow-http` on the command line): one parser for the
//! manifest, the flags and the runtime, so what `check` accepts is what
//! `up` serves.

/// An outbound destination a guest may call (HTTP, or Redis): `scheme://host:port`, where
/// each part may be `*`, and the host may start with `*.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    pub scheme: Option<String>,
    pub host: HostPattern,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`.
    Suffix(String),
}

impl OutboundRule {
    /// Parses `https://api.example.com`, `http://127.0.0.1:8080`,
    /// `https://*.example.com`, `*://host:*` or `*`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid outbound host `{spec}`: {why}; expected SCHEME://HOST[:PORT], e.g. https://api.example.com"
            )
        };
        if spec == "*" {
            return Ok(Self {
                scheme: None,
                host: HostPattern::Any,
                port: None,
            });
        }
        let (scheme, rest) = spec
            .split_once("://")
            .ok_or_else(|| bad("missing scheme"))?;
        let scheme = match scheme {
            "*" => None,
            // Redis addresses, for Spin components' outbound Redis.
            "http" | "https" | "redis" | "rediss" => Some(scheme.to_string()),
            _ => return Err(bad("the scheme must be http, https, redis, rediss or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("a path is not allowed"));
        }
        if rest.contains('@') {
            return Err(bad("credentials are not allowed"));
        }
        if rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "?#%\\".contains(c))
        {
            return Err(bad("it contains characters a host cannot have"));
        }
        let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
            let (h, after) = stripped
                .split_once(']')
                .ok_or_else(|| bad("unclosed `[`"))?;
            (format!("[{h}]"), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            None => match scheme.as_deref() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                Some("redis" | "rediss") => Some(6379),
                _ => None,
            },
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad("invalid port"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Suffix(suffix.to_string())
        } else if host.is_empty() || host.contains('*') {
            return Err(bad(
                "a wildcard may only stand for the whole host or its leading labels (`*.example.com`)",
            ));
        } else {
            HostPattern::Exact(host)
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if let Some(s) = &self.scheme
            && !s.eq_ignore_ascii_case(scheme)
        {
            return false;
        }
        if let Some(p) = self.port
            && p != port
        {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Suffix(s) => host.len() > s.len() + 1 && host.ends_with(&format!(".{s}")),
        }
    }
}
