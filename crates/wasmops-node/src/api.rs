//! The admin API: HTTP/JSON on the admin listener, described by
//! `docs/node-api.openapi.json`. `/healthz`, `/readyz` and `/metrics` are
//! open (read-only); everything under `/v1` needs a bearer token, `read`
//! scope to look and `deploy` scope to change. Every error is a JSON
//! object `{"error": "..."}` with a 4xx or 5xx status, and a refused change
//! leaves the node as it was.

// A refusal is the response itself: the handlers return it as their error
// and send it as it is.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use wasmops_runtime::http::Body;

use crate::auth::{Caller, Scope, TokenFile};
use crate::state::AppSpec;
use crate::{AppSlot, ChangeError, Node, json_error, json_response};

/// A deploy request: the component by digest (uploaded before to
/// `/v1/blobs`) or by reference, and how the app is reached and run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(flatten)]
    pub spec: AppSpec,
}

/// A rollback request: to a named version, or the previous one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub version: Option<i64>,
}

/// The admin side of the node.
#[derive(Clone)]
pub struct Admin {
    pub node: Arc<Node>,
    pub tokens: Arc<TokenFile>,
}

fn change_error(node: &Node, e: ChangeError) -> Response<Body> {
    let status = match &e {
        ChangeError::Bad(_) => StatusCode::BAD_REQUEST,
        ChangeError::Unusable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ChangeError::Conflict(_) => StatusCode::CONFLICT,
        ChangeError::NotFound(_) => StatusCode::NOT_FOUND,
        ChangeError::Source(m) if m.starts_with("refusing") => StatusCode::FORBIDDEN,
        ChangeError::Source(_) => StatusCode::BAD_GATEWAY,
        ChangeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_error(status, &node.scrub(&e.to_string()))
}

/// A version as the API shows it: variables by name only (their values
/// may be secrets).
fn version_json(v: &crate::state::Version) -> Value {
    let mut j = json!(v);
    if let Some(vars) = j["spec"].get_mut("variables") {
        let names: Vec<Value> = vars
            .as_object()
            .map(|o| o.keys().map(|k| json!(k)).collect())
            .unwrap_or_default();
        *vars = Value::Array(names);
    }
    j
}

fn app_json(node: &Node, slot: &AppSlot) -> Value {
    let v = &slot.version;
    let last_error = slot.last_error();
    json!({
        "name": slot.name,
        "kind": slot.kind.name(),
        "version": v.version,
        "digest": v.digest,
        "source": v.source,
        "hosts": v.spec.hosts,
        "routes": if v.spec.routes.is_empty() { vec!["/".to_string()] } else { v.spec.routes.clone() },
        "deployed_by": v.deployed_by,
        "deployed_at": v.deployed_at,
        "loaded": slot.is_loaded(),
        "requests": slot.requests.load(Ordering::Relaxed),
        "last_error": last_error.as_ref().map(|f| node.scrub(&f.message)),
        "last_error_at": last_error.as_ref().map(|f| {
            wasmops_units::rfc3339(f.at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
        }),
    })
}

/// Reads a whole request body, at most `max` bytes (`limit` names the
/// setting), each part within `idle` (the node's `--body-timeout`) of the
/// one before: a client that stops sending gets 408 rather than holding the
/// request open.
async fn read_body(
    mut body: hyper::body::Incoming,
    max: u64,
    limit: &str,
    idle: std::time::Duration,
) -> Result<Bytes, Response<Body>> {
    let mut out = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "the request body stopped arriving for {:?} (the node's --body-timeout)",
                        idle
                    ),
                ));
            }
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                ));
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > max {
                return Err(json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is larger than {max} bytes ({limit})"),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Response<Body>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {}", without_values(&e.to_string())),
        )
    })
}

/// A JSON error without the string values it quotes (`invalid type: string
/// "..."`): a body may carry secrets, and errors are logged and shown.
fn without_values(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let quoted = &rest[i + "string \"".len()..];
        rest = match quoted.find("\", expected").or_else(|| quoted.rfind('"')) {
            Some(end) => &quoted[end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

impl Admin {
    /// The caller of a request, or the response that refuses it.
    fn authorize(
        &self,
        req: &http::Request<hyper::body::Incoming>,
        needed: Scope,
    ) -> Result<Caller, Response<Body>> {
        let presented = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let unauthorized = |why: &str| {
            let mut r = json_error(StatusCode::UNAUTHORIZED, why);
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"wasmops node\""),
            );
            r
        };
        let tokens = match self.tokens.current() {
            Ok(t) => t,
            // The reason (a path and line) is in the node's log, not told
            // to a caller who has not shown a token.
            Err(_) => {
                return Err(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the node's tokens file is missing or malformed, so no token is accepted; fix the file (the node's log says what is wrong)",
                ));
            }
        };
        if tokens.is_empty() {
            return Err(unauthorized(
                "the node has no token: start it with --tokens-file FILE, or add one to its file with `wasmops node token --tokens-file FILE` (read again without a restart)",
            ));
        }
        let Some(token) = presented else {
            return Err(unauthorized(
                "a bearer token is required (Authorization: Bearer TOKEN)",
            ));
        };
        let Some(caller) = tokens.check(token.trim()) else {
            return Err(unauthorized("the token is not valid"));
        };
        if caller.scope < needed {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                &format!(
                    "token `{}` has {} scope; this needs {}",
                    caller.name,
                    caller.scope.name(),
                    needed.name()
                ),
            ));
        }
        Ok(caller)
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: http::Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let node = &self.node;
        match (method.clone(), path.as_str()) {
            (Method::GET | Method::HEAD, "/healthz") => {
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            }
            (Method::GET | Method::HEAD, "/readyz") => {
                // Ready once every app is compiled and, with an apps
                // directory, once its declarations were applied (those that
                // failed are listed: the others serve).
                let report = node
                    .apps_dir
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let follows = node.follows_apps_dir.load(Ordering::Acquire);
                if node.ready.load(Ordering::Acquire) && (!follows || report.is_some()) {
                    let mut body = json!({"status": "ready", "apps": node.table().apps.len()});
                    if let Some(r) = report {
                        body["declarations"] = json!({
                            "applied": r.applied,
                            "failed": r.failed.iter().map(|(app, error)| json!({"app": app, "error": node.scrub(error)})).collect::<Vec<_>>(),
                        });
                    }
                    json_response(StatusCode::OK, &body)
                } else {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "starting"}),
                    )
                }
            }
            (Method::GET | Method::HEAD, "/metrics") => {
                // The node's own families go before the exposition's end.
                let mut text = node.metrics.encode();
                let eof = text.ends_with("# EOF\n");
                if eof {
                    text.truncate(text.len() - "# EOF\n".len());
                }
                text.push_str(&self.node_metrics());
                if eof {
                    text.push_str("# EOF\n");
                }
                let mut r = json_response(StatusCode::OK, &Value::Null);
                *r.body_mut() = http_body_util::Full::new(Bytes::from(text))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (_, p) if p == "/v1" || p.starts_with("/v1/") => self.v1(req, &method, &path).await,
            _ => json_error(
                StatusCode::NOT_FOUND,
                &format!("no such endpoint {path}; see /v1/apps"),
            ),
        }
    }

    async fn v1(
        &self,
        req: http::Request<hyper::body::Incoming>,
        method: &Method,
        path: &str,
    ) -> Response<Body> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
        let needed = if *method == Method::GET || *method == Method::HEAD {
            Scope::Read
        } else {
            Scope::Deploy
        };
        let caller = match self.authorize(&req, needed) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let node = self.node.clone();
        // HEAD is GET without the body (hyper leaves it out).
        let dispatch = if *method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        match (dispatch, parts.as_slice()) {
            (Method::GET, ["apps"]) => {
                let table = node.table();
                let mut apps: Vec<Value> = table.apps.iter().map(|a| app_json(&node, a)).collect();
                apps.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                json_response(StatusCode::OK, &json!({ "apps": apps }))
            }
            (Method::GET, ["apps", name]) => {
                let table = node.table();
                let Some(slot) = table.get(name) else {
                    return json_error(StatusCode::NOT_FOUND, &format!("no app named `{name}`"));
                };
                let mut v = app_json(&node, slot);
                match node.state.app(name) {
                    Ok((_, versions, events)) => {
                        v["versions"] = Value::Array(versions.iter().map(version_json).collect());
                        v["history"] = json!(events);
                    }
                    Err(e) => return change_error(&node, e.into()),
                }
                json_response(StatusCode::OK, &v)
            }
            (Method::POST, ["blobs"]) => {
                let bytes = match read_body(
                    req.into_body(),
                    node.config.max_upload,
                    "the node's --max-upload",
                    node.config.body_timeout,
                )
                .await
                {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let n = node.clone();
                match tokio::task::spawn_blocking(move || n.upload(&bytes)).await {
                    Ok(Ok(digest)) => {
                        json_response(StatusCode::CREATED, &json!({ "digest": digest }))
                    }
                    Ok(Err(e)) => change_error(&node, e),
                    Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            (Method::GET, ["blobs", digest]) => match node.state.read_blob(digest) {
                Ok(bytes) => {
                    let media = if wasmops_oci::app::is_tar(&bytes) {
                        "application/x-tar"
                    } else {
                        "application/wasm"
                    };
                    let mut r = json_response(StatusCode::OK, &Value::Null);
                    *r.body_mut() = http_body_util::Full::new(Bytes::from(bytes))
                        .map_err(|never| match never {})
                        .boxed_unsync();
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(media),
                    );
                    r
                }
                Err(_) => json_error(
                    StatusCode::NOT_FOUND,
                    &format!("no blob {digest} on this node"),
                ),
            },
            (Method::PUT, ["apps", name]) => {
                let name = name.to_string();
                let bytes = match read_body(
                    req.into_body(),
                    1 << 20,
                    "the most a deploy request may be",
                    node.config.body_timeout,
                )
                .await
                {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let d: DeployRequest = match parse_json(&bytes) {
                    Ok(d) => d,
                    Err(r) => return r,
                };
                let (digest, source) = match (d.digest, d.reference) {
                    (Some(_), Some(_)) => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            "give `digest` or `reference`, not both",
                        );
                    }
                    (None, None) => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            "give the component or app: `digest` (of a blob uploaded to /v1/blobs) or `reference` (an OCI reference)",
                        );
                    }
                    (Some(digest), None) => {
                        if !node.state.touch_blob(&digest) {
                            return json_error(
                                StatusCode::BAD_REQUEST,
                                &format!(
                                    "no blob {digest} on this node: upload it to /v1/blobs first"
                                ),
                            );
                        }
                        (digest, "upload".to_string())
                    }
                    (None, Some(reference)) => match node.fetch(&reference).await {
                        Ok((digest, manifest)) => {
                            let source = if reference.contains('@') {
                                reference
                            } else {
                                format!("{reference}@{manifest}")
                            };
                            (digest, source)
                        }
                        Err(e) => return change_error(&node, e),
                    },
                };
                let by = caller.name.clone();
                let spec = d.spec;
                let n = node.clone();
                let result = tokio::task::spawn_blocking(move || {
                    n.deploy(&name, &digest, &source, spec, &by)
                })
                .await;
                match result {
                    Ok(Ok(v)) => json_response(StatusCode::OK, &version_json(&v)),
                    Ok(Err(e)) => change_error(&node, e),
                    Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            (Method::POST, ["apps", name, "rollback"]) => {
                let name = name.to_string();
                let bytes = match read_body(
                    req.into_body(),
                    64 << 10,
                    "the most a rollback request may be",
                    node.config.body_timeout,
                )
                .await
                {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let r: RollbackRequest = match parse_json(&bytes) {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
                let by = caller.name.clone();
                let n = node.clone();
                match tokio::task::spawn_blocking(move || n.rollback(&name, r.version, &by)).await {
                    Ok(Ok(v)) => json_response(StatusCode::OK, &version_json(&v)),
                    Ok(Err(e)) => change_error(&node, e),
                    Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            (Method::DELETE, ["apps", name]) => match node.delete(name, &caller.name) {
                Ok(()) => json_response(StatusCode::OK, &json!({ "deleted": name })),
                Err(e) => change_error(&node, e),
            },
            (_, ["apps"] | ["apps", _] | ["apps", _, "rollback"] | ["blobs"] | ["blobs", _]) => {
                json_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("{method} is not allowed on {path}"),
                )
            }
            _ => json_error(
                StatusCode::NOT_FOUND,
                &format!("no such endpoint {path}; see /v1/apps"),
            ),
        }
    }

    /// The node's own metrics, in the Prometheus text format.
    fn node_metrics(&self) -> String {
        let n = &self.node;
        let table = n.table();
        let loaded = n.loaded.apps.load(std::sync::atomic::Ordering::Relaxed);
        let s = &n.stats;
        let declarations = match &*n.apps_dir.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(r) => format!(
                "# HELP wasmops_node_declarations Declarations of the apps directory by state at the last pass.
# TYPE wasmops_node_declarations gauge
wasmops_node_declarations{{state=\"applied\"}} {}
wasmops_node_declarations{{state=\"failed\"}} {}
",
                r.applied,
                r.failed.len()
            ),
            None => String::new(),
        };
        let own = format!(
            "# HELP wasmops_node_apps Apps deployed on the node.\n# TYPE wasmops_node_apps gauge\nwasmops_node_apps {}\n\
             # HELP wasmops_node_apps_loaded Apps loaded (compiled code mapped, ready to instantiate).\n# TYPE wasmops_node_apps_loaded gauge\nwasmops_node_apps_loaded {loaded}\n\
             # HELP wasmops_node_app_loads App loads: on a request after a start or an unload, and by deploys and rollbacks (which check the new version loaded).\n# TYPE wasmops_node_app_loads counter\nwasmops_node_app_loads_total {}\n\
             # HELP wasmops_node_app_unloads Apps unloaded (idle, or too many loaded).\n# TYPE wasmops_node_app_unloads counter\nwasmops_node_app_unloads_total {}\n\
             # HELP wasmops_node_deploys Deploys by result.\n# TYPE wasmops_node_deploys counter\nwasmops_node_deploys_total{{result=\"ok\"}} {}\nwasmops_node_deploys_total{{result=\"refused\"}} {}\n\
             # HELP wasmops_node_memory_budget_bytes The memory budget and what running instances reserve of it.\n# TYPE wasmops_node_memory_budget_bytes gauge\nwasmops_node_memory_budget_bytes{{kind=\"total\"}} {}\nwasmops_node_memory_budget_bytes{{kind=\"reserved\"}} {}\n",
            table.apps.len(),
            s.loads.load(Ordering::Relaxed),
            s.unloads.load(Ordering::Relaxed),
            s.deploys.load(Ordering::Relaxed),
            s.deploys_refused.load(Ordering::Relaxed),
            n.budget().bytes(),
            n.budget().in_use(),
        );
        own + &declarations
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn json_errors_do_not_repeat_string_values() {
        let e = serde_json::from_slice::<BTreeMap<String, BTreeMap<String, String>>>(
            br#"{"variables":"api_token=SUPERSECRET"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("SUPERSECRET"), "serde quotes the value: {e}");
        let clean = super::without_values(&e);
        assert!(!clean.contains("SUPERSECRET"), "{clean}");
        assert!(
            clean.starts_with("invalid type: a string, expected a map"),
            "{clean}"
        );
        assert_eq!(
            super::without_values(r#"invalid value: string "a\"b", expected x at line 1"#),
            "invalid value: a string, expected x at line 1"
        );
    }
}
