//! Route paths, route hosts and the default check of outbound hosts.

use std::fmt;

use crate::error::quote;

/// An HTTP route of a component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Only requests for this host (lowercase; may start with `*.`), or any
    /// host when `None`.
    pub host: Option<String>,
    /// The path, without the trailing `/...` of a prefix route (`/...` gives
    /// `/`).
    pub path: String,
    /// `true` for `/path/...` (matches `/path` and everything under
    /// `/path/`), `false` for an exact path.
    pub prefix: bool,
}

impl Route {
    /// The route as written in a manifest: `/hello`, `/api/...`, `/...`.
    pub fn path_form(&self) -> String {
        match (self.prefix, self.path.as_str()) {
            (true, "/") => "/...".to_string(),
            (true, p) => format!("{p}/..."),
            (false, p) => p.to_string(),
        }
    }

    /// Whether the route matches a request path (the host is not checked).
    pub fn matches_path(&self, path: &str) -> bool {
        if !self.prefix {
            return path == self.path;
        }
        if self.path == "/" {
            return true;
        }
        match path.strip_prefix(self.path.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for Route {
    /// The manifest form, with the host in front when there is one:
    /// `api.example.com/api/...`, `/hello`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            f.write_str(host)?;
        }
        f.write_str(&self.path_form())
    }
}

/// A problem with a value: (message, hint).
pub(crate) type Problem = (String, String);

/// Parses a route path as written: returns (path without `/...`, prefix).
pub(crate) fn parse_route_path(s: &str) -> Result<(String, bool), Problem> {
    let q = quote(s);
    if s.is_empty() {
        return Err((
            "the route is empty".into(),
            "write a path starting with `/`, e.g. `/hello`, or `/...` for everything".into(),
        ));
    }
    if !s.starts_with('/') {
        let hint = if s.contains("://") {
            "a route is a path: write the host separately, e.g. { path = \"/api/...\", host = \"api.example.com\" }".to_string()
        } else {
            format!("routes start with `/`: write {}", quote(&format!("/{s}")))
        };
        return Err((format!("route {q} does not start with `/`"), hint));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        let what = if c == ' ' { "a space" } else { "whitespace" };
        return Err((
            format!("route {q} contains {what}"),
            "percent-encode it (a space is %20)".into(),
        ));
    }
    if s.contains('?') || s.contains('#') {
        return Err((
            format!("route {q} contains a query or fragment"),
            "routes match the path only: remove everything from `?` or `#` on".into(),
        ));
    }
    if !s.is_ascii() {
        return Err((
            format!("route {q} contains non-ASCII characters"),
            "percent-encode them, as they appear in request paths".into(),
        ));
    }
    if s.contains("//") {
        return Err((
            format!("route {q} contains an empty segment (`//`)"),
            format!(
                "use a single `/` between segments: {}",
                quote(&collapse_slashes(s))
            ),
        ));
    }
    let segments: Vec<&str> = s[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.contains("...") && !(*seg == "..." && i == last) {
            return Err((
                format!("route {q} has `...` before its end"),
                "`...` may only be the whole last segment: `/api/...` matches `/api` and everything under it".into(),
            ));
        }
        if seg.contains('*') {
            let hint = if *seg == "*" && i == last {
                let base = &s[..s.len() - 1];
                format!(
                    "`*` is not a wildcard here: write {} for the path and everything under it",
                    quote(&format!("{base}..."))
                )
            } else {
                "`*` is not a wildcard here: write `/...` at the end for everything under a path, or `:name` for one segment".to_string()
            };
            return Err((format!("route {q} contains `*`"), hint));
        }
        if let Some(name) = seg.strip_prefix(':') {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err((
                    format!("route {q} has an invalid parameter `{seg}`"),
                    "a parameter is `:` and a name of letters, digits, `_` and `-`, e.g. `/users/:id`".into(),
                ));
            }
        }
        if *seg == "." || *seg == ".." {
            return Err((
                format!("route {q} contains a `{seg}` segment"),
                "write the path without `.` and `..` segments".into(),
            ));
        }
    }
    if segments[last] == "..." {
        let path = &s[..s.len() - "/...".len()];
        let path = if path.is_empty() { "/" } else { path };
        Ok((path.to_string(), true))
    } else {
        Ok((s.to_string(), false))
    }
}

fn collapse_slashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Checks a route host and lowercases it.
pub(crate) fn parse_route_host(s: &str) -> Result<String, Problem> {
    let q = quote(s);
    let hint_example = "write a host name such as `api.example.com` or `*.example.com`";
    if s.contains("://") {
        let without = s.split_once("://").map_or(s, |(_, h)| h);
        return Err((
            format!("host {q} has a scheme"),
            format!(
                "remove the scheme: {}",
                quote(without.trim_end_matches('/'))
            ),
        ));
    }
    if s.contains('/') {
        return Err((
            format!("host {q} contains a path"),
            "put the path in `path` and only the host name in `host`".into(),
        ));
    }
    if s.contains(':') {
        return Err((
            format!("host {q} has a port"),
            "remove the port: routes match the host name whatever the port".into(),
        ));
    }
    let host = s.to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        return Err((format!("invalid host {q}"), hint_example.into()));
    }
    Ok(host)
}

/// Checks one `allowed_outbound_hosts` entry with the grammar the runtime
/// grants by (`wasmops_units::outbound`); `{{ variable }}` templates are
/// checked once variables have values.
pub fn default_outbound_host_check(s: &str) -> Result<(), String> {
    if s.contains("{{") {
        return Ok(());
    }
    // The manifest adds its own hint on the syntax.
    wasmops_units::outbound::OutboundRule::parse(s)
        .map(|_| ())
        .map_err(|e| e.split("; expected").next().unwrap_or(&e).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_hosts_follow_the_runtime_grammar() {
        for ok in [
            "*",
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "https://*.example.com",
            "*://localhost:*",
            "https://{{ host }}",
        ] {
            assert!(default_outbound_host_check(ok).is_ok(), "{ok}");
        }
        // Each of these was accepted here once while the runtime refused it.
        for bad in [
            "https://api*.example.com",
            "ftp://x.com",
            "https://user@x.com",
            "https://x.com:0",
            "https://x.com/path",
            "x.com",
        ] {
            let e = default_outbound_host_check(bad).unwrap_err();
            assert!(
                wasmops_units::outbound::OutboundRule::parse(bad).is_err(),
                "{bad}"
            );
            assert!(!e.contains("; expected"), "{e}");
        }
    }

    fn route(s: &str) -> Result<(String, bool), String> {
        parse_route_path(s).map_err(|(m, _)| m)
    }

    #[test]
    fn route_paths() {
        assert_eq!(route("/hello"), Ok(("/hello".into(), false)));
        assert_eq!(route("/hello/"), Ok(("/hello/".into(), false)));
        assert_eq!(route("/"), Ok(("/".into(), false)));
        assert_eq!(route("/..."), Ok(("/".into(), true)));
        assert_eq!(route("/api/..."), Ok(("/api".into(), true)));
        assert_eq!(route("/a/b/..."), Ok(("/a/b".into(), true)));
        assert!(route("").is_err());
        assert!(route("hello").is_err());
        assert!(route("/a/.../b").is_err());
        assert!(route("/a...").is_err());
        assert!(route("/a/....").is_err());
        assert!(route("/a//b").is_err());
        assert!(route("/a?x=1").is_err());
        assert!(route("/a#x").is_err());
        assert!(route("/a b").is_err());
        assert!(route("/a\tb").is_err());
        assert!(route("/é").is_err());
        assert!(route("/a/../b").is_err());
        assert!(route("/a/./b").is_err());
        assert!(route("//...").is_err());
        assert!(route("https://x/y").is_err());
    }

    #[test]
    fn route_display_and_matching() {
        let r = |host: Option<&str>, path: &str, prefix| Route {
            host: host.map(str::to_string),
            path: path.into(),
            prefix,
        };
        assert_eq!(
            r(Some("api.example.com"), "/api", true).to_string(),
            "api.example.com/api/..."
        );
        assert_eq!(r(None, "/hello", false).to_string(), "/hello");
        assert_eq!(r(None, "/", true).to_string(), "/...");
        assert_eq!(r(None, "/", false).to_string(), "/");

        let api = r(None, "/api", true);
        assert!(api.matches_path("/api"));
        assert!(api.matches_path("/api/"));
        assert!(api.matches_path("/api/x/y"));
        assert!(!api.matches_path("/apix"));
        assert!(!api.matches_path("/"));
        assert!(r(None, "/", true).matches_path("/anything"));
        let exact = r(None, "/hello/", false);
        assert!(exact.matches_path("/hello/"));
        assert!(!exact.matches_path("/hello"));
    }

    #[test]
    fn route_hosts() {
        assert_eq!(
            parse_route_host("API.Example.com"),
            Ok("api.example.com".into())
        );
        assert_eq!(
            parse_route_host("*.example.com"),
            Ok("*.example.com".into())
        );
        assert_eq!(parse_route_host("localhost"), Ok("localhost".into()));
        assert_eq!(parse_route_host("127.0.0.1"), Ok("127.0.0.1".into()));
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "https://x.com",
            "x.com:8080",
            "x.com/a",
            "a b",
            "-a.com",
            "a_b.com",
            "x.*.com",
        ] {
            assert!(parse_route_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outbound_hosts() {
        for ok in [
            "*",
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "https://*.example.com",
            "*://example.com",
            "https://example.com:*",
            "https://example.com/",
            "http://[::1]:8080",
        ] {
            assert_eq!(default_outbound_host_check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://",
            "https://example.com/path",
            "https://example.com:http",
            "https://example.com:0",
            "https://example.com:70000",
            "https://user:pw@example.com",
            "https://exa mple.com",
            "",
        ] {
            assert!(default_outbound_host_check(bad).is_err(), "{bad}");
        }
    }
}
