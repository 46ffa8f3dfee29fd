//! The routing table of an app: exact and prefix paths, optionally bound to
//! a host name.
//!
//! Precedence: routes of a matching host are tried before host-less ones
//! (an exact host name before a `*.` wildcard, a longer wildcard before a
//! shorter one); within one host, an exact path beats a prefix, and a longer
//! prefix beats a shorter one. Lookups cost one hash probe for exact paths
//! and a scan of the prefixes, longest first.

use std::collections::HashMap;

/// Routes of one host (or of no host).
#[derive(Debug)]
struct Table<T> {
    exact: HashMap<String, T>,
    /// (prefix without a trailing slash, value), longest first.
    prefixes: Vec<(String, T)>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            prefixes: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    fn add(&mut self, path: &str, prefix: bool, value: T) -> Result<(), T> {
        if prefix {
            let p = path.trim_end_matches('/').to_string();
            if self.prefixes.iter().any(|(q, _)| *q == p) {
                return Err(value);
            }
            let at = self
                .prefixes
                .iter()
                .position(|(q, _)| q.len() < p.len())
                .unwrap_or(self.prefixes.len());
            self.prefixes.insert(at, (p, value));
            Ok(())
        } else if self.exact.contains_key(path) {
            Err(value)
        } else {
            self.exact.insert(path.to_string(), value);
            Ok(())
        }
    }

    fn find(&self, path: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(path) {
            return Some(v);
        }
        self.prefixes.iter().find_map(|(p, v)| {
            let under = path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            under.then_some(v)
        })
    }
}

/// Maps (host, path) to a value.
#[derive(Debug)]
pub struct Router<T> {
    hosts: HashMap<String, Table<T>>,
    /// (suffix starting with '.', table), longest suffix first.
    wildcards: Vec<(String, Table<T>)>,
    any_host: Table<T>,
    len: usize,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            hosts: HashMap::new(),
            wildcards: Vec::new(),
            any_host: Table::default(),
            len: 0,
        }
    }
}

/// The host part of a `Host` header or authority: no port, lower case.
pub fn normalize_host(h: &str) -> String {
    let h = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.rsplit_once(':').map_or(h, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                h
            }
        })
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

impl<T> Router<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a route; gives the value back when the same route exists.
    /// `host` may be `*.example.com`.
    pub fn add(&mut self, host: Option<&str>, path: &str, prefix: bool, value: T) -> Result<(), T> {
        let table = match host.map(|h| h.to_ascii_lowercase()) {
            None => &mut self.any_host,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => {
                    let i = match self.wildcards.iter().position(|(s, _)| s == suffix) {
                        Some(i) => i,
                        None => {
                            let at = self
                                .wildcards
                                .iter()
                                .position(|(s, _)| s.len() < suffix.len())
                                .unwrap_or(self.wildcards.len());
                            self.wildcards
                                .insert(at, (suffix.to_string(), Table::default()));
                            at
                        }
                    };
                    &mut self.wildcards[i].1
                }
                None => self.hosts.entry(h).or_default(),
            },
        };
        table.add(path, prefix, value)?;
        self.len += 1;
        Ok(())
    }

    /// The value for a request to `host` (as in the `Host` header, port
    /// allowed) and `path`.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&T> {
        if let Some(host) = host
            && (!self.hosts.is_empty() || !self.wildcards.is_empty())
        {
            let h = normalize_host(host);
            if let Some(v) = self.hosts.get(&h).and_then(|t| t.find(path)) {
                return Some(v);
            }
            for (suffix, t) in &self.wildcards {
                if h.len() > suffix.len()
                    && h.ends_with(suffix.as_str())
                    && let Some(v) = t.find(path)
                {
                    return Some(v);
                }
            }
        }
        self.any_host.find(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let mut r = Router::new();
        r.add(None, "/", true, "root").unwrap();
        r.add(None, "/api", true, "api").unwrap();
        r.add(None, "/api/v2", true, "v2").unwrap();
        r.add(None, "/api/health", false, "health").unwrap();
        r.add(Some("admin.example.com"), "/", true, "admin")
            .unwrap();
        r.add(Some("*.example.com"), "/api", true, "wild-api")
            .unwrap();
        r.add(Some("*.eu.example.com"), "/api", true, "eu-api")
            .unwrap();
        assert_eq!(r.add(None, "/api", true, "dup"), Err("dup"));
        assert_eq!(r.add(None, "/api/health", false, "dup"), Err("dup"));
        assert_eq!(r.len(), 7);

        let at = |h: Option<&str>, p: &str| r.route(h, p).copied();
        assert_eq!(at(None, "/"), Some("root"));
        assert_eq!(at(None, "/x"), Some("root"));
        assert_eq!(at(None, "/api"), Some("api"));
        assert_eq!(at(None, "/api/"), Some("api"));
        assert_eq!(at(None, "/apix"), Some("root"));
        assert_eq!(at(None, "/api/v2/x"), Some("v2"));
        assert_eq!(at(None, "/api/v22"), Some("api"));
        assert_eq!(at(None, "/api/health"), Some("health"));
        assert_eq!(at(None, "/api/health/x"), Some("api"));
        assert_eq!(at(Some("Admin.Example.com:8080"), "/api"), Some("admin"));
        assert_eq!(at(Some("x.example.com"), "/api/1"), Some("wild-api"));
        assert_eq!(at(Some("x.eu.example.com"), "/api/1"), Some("eu-api"));
        assert_eq!(at(Some("example.com"), "/api/1"), Some("api"));
        assert_eq!(at(Some("x.example.com"), "/other"), Some("root"));
        assert_eq!(at(Some("[::1]:3000"), "/"), Some("root"));
    }

    #[test]
    fn no_catch_all_means_no_match() {
        let mut r = Router::new();
        r.add(None, "/hello", false, 1).unwrap();
        assert_eq!(r.route(None, "/hello"), Some(&1));
        assert_eq!(r.route(None, "/hello/"), None);
        assert_eq!(r.route(None, "/"), None);
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Example.COM:80"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("127.0.0.1"), "127.0.0.1");
    }
}
