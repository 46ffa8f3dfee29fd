//! Registry credentials, where Docker keeps them: `$DOCKER_CONFIG/config.json`
//! (else `~/.docker/config.json`) with `auths`, `credHelpers` and
//! `credsStore`, plus `WASMOPS_REGISTRY_USERNAME` / `WASMOPS_REGISTRY_PASSWORD`
//! from the environment (limited to the hosts in `WASMOPS_REGISTRY_HOST`,
//! comma-separated, when that is set).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::OciError;

/// A user name and password (or identity token, when the user name is
/// `<token>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where credentials come from.
#[derive(Debug, Clone)]
pub struct Credentials {
    config_path: PathBuf,
    env: Option<(Credential, Option<Vec<String>>)>,
}

const HUB_KEY: &str = "https://index.docker.io/v1/";

impl Credentials {
    /// Docker's config file and the `WASMOPS_REGISTRY_*` variables.
    pub fn from_env() -> Self {
        let config_path = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("config.json"),
            _ => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".docker/config.json"),
        };
        let env = match (
            std::env::var("WASMOPS_REGISTRY_USERNAME"),
            std::env::var("WASMOPS_REGISTRY_PASSWORD"),
        ) {
            (Ok(username), Ok(password)) if !username.is_empty() => {
                let hosts = std::env::var("WASMOPS_REGISTRY_HOST").ok().map(|h| {
                    h.split(',')
                        .map(|s| normalize(s.trim()))
                        .filter(|s| !s.is_empty())
                        .collect()
                });
                Some((Credential { username, password }, hosts))
            }
            _ => None,
        };
        Self { config_path, env }
    }

    /// The config file credentials are read from and stored in.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    fn config(&self) -> Result<Value, OciError> {
        match std::fs::read(&self.config_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                OciError::Invalid(format!(
                    "{}: not valid JSON ({e}); fix or remove it",
                    self.config_path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
            Err(e) => Err(OciError::Io(format!("{}: {e}", self.config_path.display()))),
        }
    }

    /// The credential for a registry host, if any is configured.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, OciError> {
        let host = normalize(registry);
        if let Some((cred, hosts)) = &self.env
            && hosts.as_ref().is_none_or(|h| h.contains(&host))
        {
            return Ok(Some(cred.clone()));
        }
        let config = self.config()?;
        if let Some(helper) = helper_for(&config, &host) {
            return helper_get(&helper, &server_url(&host));
        }
        let Some(auths) = config["auths"].as_object() else {
            return Ok(None);
        };
        for (key, entry) in auths {
            if normalize(key) != host {
                continue;
            }
            if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
                return Ok(Some(Credential {
                    username: "<token>".into(),
                    password: token.into(),
                }));
            }
            if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
                let decoded = B64
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    });
                let Some((username, password)) = decoded else {
                    return Err(OciError::Invalid(format!(
                        "{}: the `auth` of {key} is not base64 of user:password; run `wasmops registry login {host}` again",
                        self.config_path.display()
                    )));
                };
                return Ok(Some(Credential { username, password }));
            }
            if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
                return Ok(Some(Credential {
                    username: u.into(),
                    password: p.into(),
                }));
            }
        }
        Ok(None)
    }

    /// Stores a credential: in the credential helper configured for the
    /// host, else base64-encoded in `auths` (the file is made 0600).
    /// Returns where it went.
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<String, OciError> {
        let host = normalize(registry);
        let mut config = self.config()?;
        if let Some(helper) = helper_for(&config, &host) {
            let input = json!({"ServerURL": server_url(&host), "Username": cred.username, "Secret": cred.password});
            helper_run(&helper, "store", &input.to_string())?;
            return Ok(format!("credential helper docker-credential-{helper}"));
        }
        if !config.is_object() {
            config = json!({});
        }
        if !config["auths"].is_object() {
            config["auths"] = json!({});
        }
        let key = if host == crate::reference::DOCKER_HUB {
            HUB_KEY.to_string()
        } else {
            host.clone()
        };
        if let Some(auths) = config["auths"].as_object_mut() {
            auths.retain(|k, _| normalize(k) != host);
            auths.insert(
                key,
                json!({"auth": B64.encode(format!("{}:{}", cred.username, cred.password))}),
            );
        }
        self.write(&config)?;
        Ok(self.config_path.display().to_string())
    }

    /// Forgets the credential for a host; whether there was one.
    pub fn erase(&self, registry: &str) -> Result<bool, OciError> {
        let host = normalize(registry);
        let mut config = self.config()?;
        if let Some(helper) = helper_for(&config, &host) {
            helper_run(&helper, "erase", &server_url(&host))?;
            return Ok(true);
        }
        let Some(auths) = config["auths"].as_object_mut() else {
            return Ok(false);
        };
        let before = auths.len();
        auths.retain(|k, _| normalize(k) != host);
        if auths.len() == before {
            return Ok(false);
        }
        self.write(&config)?;
        Ok(true)
    }

    fn write(&self, config: &Value) -> Result<(), OciError> {
        let bytes = serde_json::to_vec_pretty(config).unwrap_or_default();
        crate::write_atomic_mode(&self.config_path, &bytes, Some(0o600))
            .map_err(|e| OciError::Io(format!("{}: {e}", self.config_path.display())))
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://h:5000/x` -> `h:5000`.
fn normalize(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            crate::reference::DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

fn server_url(host: &str) -> String {
    if host == crate::reference::DOCKER_HUB {
        HUB_KEY.to_string()
    } else {
        host.to_string()
    }
}

fn helper_for(config: &Value, host: &str) -> Option<String> {
    if let Some(helpers) = config["credHelpers"].as_object() {
        for (k, v) in helpers {
            if normalize(k) == host
                && let Some(h) = v.as_str().filter(|h| !h.is_empty())
            {
                return Some(h.to_string());
            }
        }
    }
    config["credsStore"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn helper_run(helper: &str, action: &str, input: &str) -> Result<String, OciError> {
    let program = format!("docker-credential-{helper}");
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(OciError::Invalid(format!(
            "credential helper name `{helper}` is not a plain name"
        )));
    }
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            OciError::Io(format!(
                "cannot run credential helper {program}: {e}; install it or remove it from the Docker config"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| OciError::Io(format!("credential helper {program}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let msg = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Err(OciError::Helper(program, msg.trim().to_string()));
    }
    Ok(stdout)
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credential>, OciError> {
    let out = match helper_run(helper, "get", server) {
        Ok(o) => o,
        Err(OciError::Helper(_, msg)) if msg.to_ascii_lowercase().contains("not found") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_str(&out).map_err(|e| {
        OciError::Invalid(format!(
            "credential helper docker-credential-{helper} printed no JSON ({e})"
        ))
    })?;
    match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some(u), Some(s)) if !s.is_empty() => Ok(Some(Credential {
            username: u.into(),
            password: s.into(),
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(dir: &Path) -> Credentials {
        Credentials {
            config_path: dir.join("config.json"),
            env: None,
        }
    }

    #[test]
    fn store_get_erase_in_auths() {
        let dir = tempfile::tempdir().unwrap();
        let c = creds(dir.path());
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), None);
        let cred = Credential {
            username: "u".into(),
            password: "p:w".into(),
        };
        c.store("127.0.0.1:5000", &cred).unwrap();
        c.store("docker.io", &cred).unwrap();
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), Some(cred.clone()));
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains(HUB_KEY), "{text}");
        assert!(!text.contains("p:w"), "stored base64-encoded");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("config.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(c.get("index.docker.io").unwrap(), Some(cred));
        assert!(c.erase("127.0.0.1:5000").unwrap());
        assert!(!c.erase("127.0.0.1:5000").unwrap());
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn broken_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{nope").unwrap();
        let e = creds(dir.path()).get("x.io").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }
}
