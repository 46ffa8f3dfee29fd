//! The routing table of an app: exact and prefix paths, optionally bound to
//! a host name.
//!
//! Precedence: routes of a matching host are tried before host-less ones
//! (an exact host name before a `*.` wildcard, a longer wildcard before a
//! shorter one); within one host, an exact path beats a path with
//! parameters (`/users/:id`, Spin's form: `:name` matches one segment),
//! which beats a prefix, and a longer prefix beats a shorter one. Among
//! paths with parameters, more literal segments win. Lookups cost one hash
//! probe for exact paths and a scan of the patterns and the prefixes.

use std::collections::HashMap;

/// One segment of a path with parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `:name`: any one non-empty segment.
    Param(String),
}

/// A path with `:name` segments; a prefix pattern also matches everything
/// under it.
#[derive(Debug)]
struct Pattern<T> {
    segments: Vec<Segment>,
    prefix: bool,
    value: T,
}

impl<T> Pattern<T> {
    fn literals(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// Same shape: the same literals in the same places, parameters
    /// anywhere named alike or not.
    fn same_shape(&self, segments: &[Segment], prefix: bool) -> bool {
        self.prefix == prefix
            && self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }

    fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut parts = path.trim_start_matches('/').split('/');
        let mut params = Vec::new();
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Param(name) if !part.is_empty() => {
                    params.push((name.clone(), part.to_string()));
                }
                _ => return None,
            }
        }
        let rest: Vec<&str> = parts.collect();
        let done = rest.is_empty() || rest == [""];
        (done || self.prefix).then_some(params)
    }
}

/// The segments of a path with parameters, or `None` for a plain path.
fn pattern_segments(path: &str) -> Option<Vec<Segment>> {
    let path = path.trim_end_matches('/');
    if !path.split('/').any(|s| s.starts_with(':')) {
        return None;
    }
    Some(
        path.trim_start_matches('/')
            .split('/')
            .map(|s| match s.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            })
            .collect(),
    )
}

/// Routes of one host (or of no host).
#[derive(Debug)]
struct Table<T> {
    exact: HashMap<String, T>,
    /// Paths with parameters, more literal segments first.
    patterns: Vec<Pattern<T>>,
    /// (prefix without a trailing slash, value), longest first.
    prefixes: Vec<(String, T)>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            patterns: Vec::new(),
            prefixes: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    fn add(&mut self, path: &str, prefix: bool, value: T) -> Result<(), T> {
        if let Some(segments) = pattern_segments(path) {
            if self
                .patterns
                .iter()
                .any(|p| p.same_shape(&segments, prefix))
            {
                return Err(value);
            }
            let pattern = Pattern {
                segments,
                prefix,
                value,
            };
            let key = |p: &Pattern<T>| (p.literals(), p.segments.len(), !p.prefix);
            let at = self
                .patterns
                .iter()
                .position(|q| key(q) < key(&pattern))
                .unwrap_or(self.patterns.len());
            self.patterns.insert(at, pattern);
            Ok(())
        } else if prefix {
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

    fn find(&self, path: &str) -> Option<(&T, Vec<(String, String)>)> {
        if let Some(v) = self.exact.get(path) {
            return Some((v, Vec::new()));
        }
        for p in &self.patterns {
            if let Some(params) = p.matches(path) {
                return Some((&p.value, params));
            }
        }
        self.prefixes.iter().find_map(|(p, v)| {
            let under = path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            under.then_some((v, Vec::new()))
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
        self.route_params(host, path).map(|(v, _)| v)
    }

    /// As `route`, with the values of the matched route's `:name` segments.
    pub fn route_params(
        &self,
        host: Option<&str>,
        path: &str,
    ) -> Option<(&T, Vec<(String, String)>)> {
        if let Some(host) = host
            && (!self.hosts.is_empty() || !self.wildcards.is_empty())
        {
            let h = normalize_host(host);
            if let Some(found) = self.hosts.get(&h).and_then(|t| t.find(path)) {
                return Some(found);
            }
            for (suffix, t) in &self.wildcards {
                if h.len() > suffix.len()
                    && h.ends_with(suffix.as_str())
                    && let Some(found) = t.find(path)
                {
                    return Some(found);
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
    fn parameters() {
        let mut r = Router::new();
        r.add(None, "/users/:id", false, "user").unwrap();
        r.add(None, "/users/me", false, "me").unwrap();
        r.add(None, "/users/:id/posts/:post", false, "post")
            .unwrap();
        r.add(None, "/files/:bucket", true, "files").unwrap();
        r.add(None, "/users", true, "users").unwrap();
        assert_eq!(r.add(None, "/users/:other", false, "dup"), Err("dup"));
        let at = |p: &str| r.route_params(None, p).map(|(v, ps)| (*v, ps));
        assert_eq!(at("/users/me"), Some(("me", vec![])));
        assert_eq!(
            at("/users/42"),
            Some(("user", vec![("id".into(), "42".into())]))
        );
        assert_eq!(
            at("/users/42/"),
            Some(("user", vec![("id".into(), "42".into())]))
        );
        assert_eq!(
            at("/users/42/posts/7"),
            Some((
                "post",
                vec![("id".into(), "42".into()), ("post".into(), "7".into())]
            ))
        );
        assert_eq!(at("/users/42/likes"), Some(("users", vec![])));
        assert_eq!(
            at("/files/b1/a/b.txt"),
            Some(("files", vec![("bucket".into(), "b1".into())]))
        );
        assert_eq!(at("/files"), None);
    }

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
