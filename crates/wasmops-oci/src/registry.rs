//! A client for the OCI distribution API: manifests and blobs over HTTPS
//! (plain HTTP for loopback registries and those named insecure), Basic and
//! Bearer token auth from [`Credentials`], retries with backoff on 5xx, 429
//! and connection resets, digests verified on every read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::StreamExt as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::auth::{Credential, Credentials};
use crate::{OciError, Reference, hex_digest};

/// Manifests larger than this are refused (the distribution API's own limit).
pub const MAX_MANIFEST: usize = 4 << 20;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// What a transfer reports as it goes.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A blob starts moving (`total` bytes).
    Start { digest: String, total: u64 },
    /// `bytes` more of it moved.
    Advance { digest: String, bytes: u64 },
    /// It is done; `skipped` when it was already there.
    Done { digest: String, skipped: bool },
}

/// A progress sink.
pub type ProgressFn = std::sync::Arc<dyn Fn(Progress) + Send + Sync>;

/// A progress sink that ignores everything.
pub fn quiet() -> ProgressFn {
    std::sync::Arc::new(|_| {})
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    pub credentials: Credentials,
    /// Attempts per request on 5xx, 429 and connection resets.
    pub attempts: u32,
    /// The first backoff; it doubles each attempt.
    pub backoff: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            credentials: Credentials::from_env(),
            attempts: 4,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A manifest as fetched, verified against its digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// An OCI distribution API client.
pub struct Registry {
    http: reqwest::Client,
    opts: RegistryOptions,
    /// `(host, scope)` -> `Authorization` value.
    auth: Mutex<HashMap<(String, String), String>>,
}

enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Registry {
    pub fn new(opts: RegistryOptions) -> Result<Self, OciError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("wasmops/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| OciError::Io(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            opts,
            auth: Mutex::new(HashMap::new()),
        })
    }

    fn is_plain_http(&self, registry: &str) -> bool {
        let host = host_only(registry);
        matches!(host, "localhost" | "127.0.0.1" | "::1")
            || host.starts_with("127.")
            || self
                .opts
                .insecure
                .iter()
                .any(|h| h == registry || h == host)
    }

    fn base(&self, r: &Reference) -> String {
        let scheme = if self.is_plain_http(&r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", r.api_host())
    }

    fn url(&self, r: &Reference, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base(r), r.repository)
    }

    /// Checks that the registry answers and accepts the credentials (for
    /// `registry login`): `GET /v2/`.
    pub async fn check_login(&self, registry: &str, cred: &Credential) -> Result<(), OciError> {
        let r = Reference {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let url = format!("{}/v2/", self.base(&r));
        let resp = self.send_raw(&r, || self.http.get(&url)).await?;
        let challenge = match resp.status() {
            s if s.is_success() => return Ok(()),
            StatusCode::UNAUTHORIZED => parse_challenge(resp.headers()),
            s => return Err(status_error(&r, s, "GET /v2/", None).await),
        };
        let Some(challenge) = challenge else {
            return Err(OciError::Auth(format!(
                "{registry} answered 401 without a usable WWW-Authenticate challenge"
            )));
        };
        let header = self.authorize(&r, &challenge, "", Some(cred)).await?;
        let resp = self
            .send_raw(&r, || self.http.get(&url).header(AUTHORIZATION, &header))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else if resp.status() == StatusCode::UNAUTHORIZED {
            Err(OciError::Auth(format!(
                "{registry} refused the user name or password"
            )))
        } else {
            Err(status_error(&r, resp.status(), "GET /v2/", None).await)
        }
    }

    /// Sends with retries on 5xx/429/resets, no auth.
    async fn send_raw(
        &self,
        r: &Reference,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, OciError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match make().send().await {
                Ok(resp)
                    if (resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.opts.attempts =>
                {
                    tracing::debug!(status = %resp.status(), attempt, "registry: retrying");
                }
                Ok(resp) => return Ok(resp),
                Err(e) if is_reset(&e) && attempt < self.opts.attempts => {
                    tracing::debug!(error = %e, attempt, "registry: retrying after a reset");
                }
                Err(e) => return Err(transport_error(r, &e)),
            }
            tokio::time::sleep(self.opts.backoff * 2u32.pow(attempt - 1)).await;
        }
    }

    /// Sends with auth: on a 401 challenge, gets a token (or uses Basic)
    /// for `actions` (`pull` or `pull,push`) and sends again.
    async fn send(
        &self,
        r: &Reference,
        actions: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, OciError> {
        let scope = format!("repository:{}:{actions}", r.repository);
        let key = (r.registry.clone(), scope.clone());
        let cached = self.auth.lock().ok().and_then(|m| m.get(&key).cloned());
        let with_auth = |h: &Option<String>| {
            let rb = make();
            match h {
                Some(h) => rb.header(AUTHORIZATION, h),
                None => rb,
            }
        };
        let resp = self.send_raw(r, || with_auth(&cached)).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(challenge) = parse_challenge(resp.headers()) else {
            return Ok(resp);
        };
        let cred = self.opts.credentials.get(&r.registry)?;
        let had_cred = cred.is_some();
        let header = self.authorize(r, &challenge, &scope, cred.as_ref()).await?;
        if let Ok(mut m) = self.auth.lock() {
            m.insert(key, header.clone());
        }
        let resp = self
            .send_raw(r, || with_auth(&Some(header.clone())))
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(if had_cred {
                OciError::Auth(format!(
                    "{} refused the credentials for {}; run `wasmops registry login {}` with the right ones",
                    r.registry, r.repository, r.registry
                ))
            } else {
                OciError::Auth(format!(
                    "{} needs credentials for {}; run `wasmops registry login {}` or set WASMOPS_REGISTRY_USERNAME and WASMOPS_REGISTRY_PASSWORD",
                    r.registry, r.repository, r.registry
                ))
            });
        }
        Ok(resp)
    }

    /// The `Authorization` value answering a challenge.
    async fn authorize(
        &self,
        r: &Reference,
        challenge: &Challenge,
        scope: &str,
        cred: Option<&Credential>,
    ) -> Result<String, OciError> {
        let basic = |c: &Credential| {
            format!(
                "Basic {}",
                B64.encode(format!("{}:{}", c.username, c.password))
            )
        };
        let (realm, service) = match challenge {
            Challenge::Basic => {
                return cred.map(basic).ok_or_else(|| {
                    OciError::Auth(format!(
                        "{} needs credentials; run `wasmops registry login {}` or set WASMOPS_REGISTRY_USERNAME and WASMOPS_REGISTRY_PASSWORD",
                        r.registry, r.registry
                    ))
                });
            }
            Challenge::Bearer { realm, service } => (realm, service),
        };
        if !(realm.starts_with("https://")
            || (realm.starts_with("http://") && self.is_plain_http(&r.registry)))
        {
            return Err(OciError::Auth(format!(
                "{} sent a token realm `{realm}` that is not HTTPS; refusing to send credentials there",
                r.registry
            )));
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        let resp = match cred {
            Some(c) if c.username == "<token>" => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.password.as_str()),
                    ("client_id", "wasmops"),
                ]);
                self.send_raw(r, || self.http.post(realm.as_str()).form(&form))
                    .await?
            }
            Some(c) => {
                let b = basic(c);
                self.send_raw(r, || {
                    self.http
                        .get(realm.as_str())
                        .query(&query)
                        .header(AUTHORIZATION, &b)
                })
                .await?
            }
            None => {
                self.send_raw(r, || self.http.get(realm.as_str()).query(&query))
                    .await?
            }
        };
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(OciError::Auth(format!(
                "{}'s token service refused the credentials; run `wasmops registry login {}` with the right ones",
                r.registry, r.registry
            )));
        }
        if !resp.status().is_success() {
            return Err(status_error(r, resp.status(), "token request", None).await);
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| OciError::Auth(format!("{}: bad token response: {e}", r.registry)))?;
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                OciError::Auth(format!("{}: the token response has no token", r.registry))
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// Fetches a manifest by tag or digest and verifies its digest. An
    /// image index is resolved to its `wasm` entry (else its first).
    pub async fn get_manifest(&self, r: &Reference) -> Result<Fetched, OciError> {
        let mut f = self.get_manifest_once(r, r.reference()).await?;
        if is_index(&f.media_type, &f.bytes) {
            let index: serde_json::Value = serde_json::from_slice(&f.bytes)
                .map_err(|e| OciError::Invalid(format!("{r}: index is not JSON: {e}")))?;
            let list = index["manifests"].as_array().cloned().unwrap_or_default();
            let pick = list
                .iter()
                .find(|m| m["platform"]["architecture"] == "wasm")
                .or(list.first())
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| OciError::Invalid(format!("{r}: the image index is empty")))?
                .to_string();
            f = self.get_manifest_once(r, &pick).await?;
        }
        Ok(f)
    }

    async fn get_manifest_once(&self, r: &Reference, reference: &str) -> Result<Fetched, OciError> {
        let url = self.url(r, &format!("manifests/{reference}"));
        let resp = self
            .send(r, "pull", || {
                self.http.get(&url).header(ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(r, resp.status(), "manifest", Some(reference)).await);
        }
        let media_type = header_str(resp.headers(), CONTENT_TYPE.as_str())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let header_digest = header_str(resp.headers(), "docker-content-digest");
        let bytes = read_limited(resp, MAX_MANIFEST, r).await?;
        let digest = crate::digest(&bytes);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(OciError::DigestMismatch {
                what: format!("manifest of {r}"),
                expected,
                actual: digest,
                origin: format!("the registry {}", r.registry),
            });
        }
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// The digest a tag points at (`HEAD`), or `None` when absent.
    pub async fn head_manifest(&self, r: &Reference) -> Result<Option<String>, OciError> {
        let url = self.url(r, &format!("manifests/{}", r.reference()));
        let resp = self
            .send(r, "pull", || {
                self.http.head(&url).header(ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(header_str(resp.headers(), "docker-content-digest")),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error(r, s, "manifest", Some(r.reference())).await),
        }
    }

    /// Whether the repository has a blob.
    pub async fn has_blob(
        &self,
        r: &Reference,
        digest: &str,
        actions: &str,
    ) -> Result<bool, OciError> {
        let url = self.url(r, &format!("blobs/{digest}"));
        let resp = self.send(r, actions, || self.http.head(&url)).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(status_error(r, s, "blob", Some(digest)).await),
        }
    }

    /// Streams a blob into `w`, verifying size and digest; the caller
    /// commits `w` only when this returns `Ok`.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        w: &mut impl std::io::Write,
        progress: &ProgressFn,
    ) -> Result<(), OciError> {
        let url = self.url(r, &format!("blobs/{digest}"));
        let resp = self.send(r, "pull", || self.http.get(&url)).await?;
        if !resp.status().is_success() {
            return Err(status_error(r, resp.status(), "blob", Some(digest)).await);
        }
        progress(Progress::Start {
            digest: digest.into(),
            total: size,
        });
        let mut hasher = Sha256::new();
        let mut got: u64 = 0;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_error(r, &e))?;
            got += chunk.len() as u64;
            if got > size {
                return Err(OciError::Invalid(format!(
                    "blob {digest} of {r} is larger than the {size} bytes its manifest declares; the registry content is corrupt or was tampered with"
                )));
            }
            hasher.update(&chunk);
            w.write_all(&chunk)
                .map_err(|e| OciError::Io(format!("writing blob {digest}: {e}")))?;
            progress(Progress::Advance {
                digest: digest.into(),
                bytes: chunk.len() as u64,
            });
        }
        let actual = hex_digest(&hasher.finalize());
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!("blob of {r}"),
                expected: digest.into(),
                actual,
                origin: format!("the registry {}", r.registry),
            });
        }
        if got != size {
            return Err(OciError::Invalid(format!(
                "blob {digest} of {r} has {got} bytes, its manifest declares {size}"
            )));
        }
        progress(Progress::Done {
            digest: digest.into(),
            skipped: false,
        });
        Ok(())
    }

    /// Uploads a blob unless the repository has it; whether it was sent.
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &str,
        data: Bytes,
        progress: &ProgressFn,
    ) -> Result<bool, OciError> {
        if self.has_blob(r, digest, "pull,push").await? {
            progress(Progress::Done {
                digest: digest.into(),
                skipped: true,
            });
            return Ok(false);
        }
        let url = self.url(r, "blobs/uploads/");
        let resp = self.send(r, "pull,push", || self.http.post(&url)).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(r, resp.status(), "upload", Some(digest)).await);
        }
        let location = header_str(resp.headers(), LOCATION.as_str()).ok_or_else(|| {
            OciError::Invalid(format!("{}: the upload has no Location", r.registry))
        })?;
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base(r))
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        progress(Progress::Start {
            digest: digest.into(),
            total: data.len() as u64,
        });
        let len = data.len();
        let resp = self
            .send(r, "pull,push", || {
                let chunks: Vec<Bytes> = (0..len)
                    .step_by(256 << 10)
                    .map(|i| data.slice(i..(i + (256 << 10)).min(len)))
                    .collect();
                let d = digest.to_string();
                let progress = progress.clone();
                let stream = futures::stream::iter(chunks).map(move |c| {
                    progress(Progress::Advance {
                        digest: d.clone(),
                        bytes: c.len() as u64,
                    });
                    Ok::<_, std::io::Error>(c)
                });
                self.http
                    .request(Method::PUT, &put)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(stream))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(r, resp.status(), "upload", Some(digest)).await);
        }
        progress(Progress::Done {
            digest: digest.into(),
            skipped: false,
        });
        Ok(true)
    }

    /// Stores a manifest under a tag (or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, OciError> {
        let digest = crate::digest(bytes);
        let url = self.url(r, &format!("manifests/{reference}"));
        let body = Bytes::copy_from_slice(bytes);
        let resp = self
            .send(r, "pull,push", || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(status_error(r, resp.status(), "manifest upload", Some(reference)).await);
        }
        if let Some(d) = header_str(resp.headers(), "docker-content-digest")
            && d != digest
        {
            return Err(OciError::DigestMismatch {
                what: format!("manifest stored at {r}"),
                expected: digest,
                actual: d,
                origin: format!("the registry {}", r.registry),
            });
        }
        Ok(digest)
    }
}

fn host_only(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    media_type == crate::INDEX_MEDIA_TYPE
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
        || (media_type.is_empty()
            && serde_json::from_slice::<serde_json::Value>(bytes)
                .is_ok_and(|v| v["manifests"].is_array()))
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn parse_challenge(h: &HeaderMap) -> Option<Challenge> {
    let v = h.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let (scheme, params) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    // key="value" pairs separated by commas; values may hold commas.
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

async fn read_limited(resp: Response, limit: usize, r: &Reference) -> Result<Vec<u8>, OciError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_error(r, &e))?;
        if out.len() + chunk.len() > limit {
            return Err(OciError::Invalid(format!(
                "{r}: the manifest is larger than {} MiB",
                limit >> 20
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn is_reset(e: &reqwest::Error) -> bool {
    if e.is_connect() || e.is_builder() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        let text = s.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn transport_error(r: &Reference, e: &reqwest::Error) -> OciError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        OciError::Unreachable(format!(
            "cannot reach registry {}: {detail}; check the host and port, and that it is running",
            r.registry
        ))
    } else if e.is_timeout() {
        OciError::Unreachable(format!("registry {} timed out: {detail}", r.registry))
    } else {
        OciError::Unreachable(format!("registry {}: {detail}", r.registry))
    }
}

async fn status_error(r: &Reference, s: StatusCode, what: &str, which: Option<&str>) -> OciError {
    let which = which.map(|w| format!(" {w}")).unwrap_or_default();
    match s {
        StatusCode::NOT_FOUND => OciError::Missing(format!(
            "{}/{} has no {what}{which}; check the repository and tag",
            r.registry, r.repository
        )),
        StatusCode::FORBIDDEN => OciError::Auth(format!(
            "{} denied access to {} ({what}{which}); the account lacks permission",
            r.registry, r.repository
        )),
        StatusCode::UNAUTHORIZED => OciError::Auth(format!(
            "{} needs credentials for {}; run `wasmops registry login {}`",
            r.registry, r.repository, r.registry
        )),
        s => OciError::Invalid(format!(
            "registry {} answered {s} to {what}{which} of {}",
            r.registry, r.repository
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
                .parse()
                .unwrap(),
        );
        match parse_challenge(&h) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.example/token");
                assert_eq!(service.as_deref(), Some("registry.example"));
            }
            _ => panic!("bearer"),
        }
        h.insert(
            WWW_AUTHENTICATE,
            r#"Basic realm="Registry Realm""#.parse().unwrap(),
        );
        assert!(matches!(parse_challenge(&h), Some(Challenge::Basic)));
        h.insert(WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        assert!(parse_challenge(&h).is_none());
    }

    #[test]
    fn loopback_is_plain_http() {
        let reg = Registry::new(RegistryOptions {
            insecure: vec!["build.lan:5000".into()],
            ..Default::default()
        })
        .unwrap();
        for (host, plain) in [
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("[::1]:5000", true),
            ("build.lan:5000", true),
            ("build.lan:5001", false),
            ("ghcr.io", false),
        ] {
            assert_eq!(reg.is_plain_http(host), plain, "{host}");
        }
    }
}
