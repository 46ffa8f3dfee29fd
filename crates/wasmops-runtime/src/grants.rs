//! What a guest may touch. Everything not granted here is denied.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub use wasmops_units::outbound::{HostPattern, OutboundRule};

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

impl DirGrant {
    /// Parses `HOST[::GUEST][:ro]`. Without `::GUEST` the directory appears at
    /// the same path in the guest.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (rest, read_only) = match spec.strip_suffix(":ro") {
            Some(r) => (r, true),
            None => (spec.strip_suffix(":rw").unwrap_or(spec), false),
        };
        let (host, guest) = match rest.split_once("::") {
            Some((h, g)) => (h, g.to_string()),
            None => (rest, rest.to_string()),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!(
                "invalid directory grant `{spec}`: expected HOST[::GUEST][:ro]"
            ));
        }
        Ok(Self {
            host: PathBuf::from(host),
            guest,
            read_only,
        })
    }
}

/// One socket address rule: an IP network and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrRule {
    pub ip: IpAddr,
    pub prefix: u8,
    pub port: Option<u16>,
}

impl AddrRule {
    /// Parses `IP[/PREFIX][:PORT]`, `[IPv6][/PREFIX]:PORT` or `*:PORT`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid network grant `{spec}`: expected IP[/PREFIX][:PORT], e.g. 127.0.0.1:8080 or 10.0.0.0/8"
            )
        };
        if let Ok(sa) = spec.parse::<SocketAddr>() {
            let prefix = if sa.is_ipv4() { 32 } else { 128 };
            return Ok(Self {
                ip: sa.ip(),
                prefix,
                port: Some(sa.port()),
            });
        }
        if let Some(port) = spec.strip_prefix("*:") {
            let port = port.parse().map_err(|_| bad())?;
            return Ok(Self {
                ip: IpAddr::from([0u8, 0, 0, 0]),
                prefix: 0,
                port: Some(port),
            });
        }
        let (net, port) = match spec.rsplit_once(':') {
            Some((n, p)) if !n.is_empty() && !p.contains(']') && spec.matches(':').count() == 1 => {
                (n, Some(p.parse::<u16>().map_err(|_| bad())?))
            }
            _ => (spec, None),
        };
        let net = net.trim_start_matches('[').trim_end_matches(']');
        let (ip, prefix) = match net.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (net, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { ip, prefix, port })
    }

    pub fn matches(&self, addr: &SocketAddr) -> bool {
        if let Some(p) = self.port
            && p != addr.port()
        {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        match (self.ip, addr.ip()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX << (32 - self.prefix as u32);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX << (128 - self.prefix as u32);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Socket access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetGrant {
    /// No sockets at all (the default).
    #[default]
    None,
    /// Any address, and name lookups.
    All,
    /// Only these addresses (connect and bind).
    Only(Vec<AddrRule>),
}

/// Everything a guest is granted. The default grants nothing.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub dirs: Vec<DirGrant>,
    pub env: Vec<(String, String)>,
    /// Pass the host's whole environment (explicit `env` entries win).
    pub env_inherit: bool,
    pub net: NetGrant,
    pub outbound_http: Vec<OutboundRule>,
    /// Args given to the guest, program name first.
    pub args: Vec<String>,
    /// Key-value stores the guest may open.
    pub key_value: crate::kv::KvAccess,
    /// SQLite databases the guest may open (Spin's `sqlite_databases`).
    pub sqlite: crate::sqlite::SqliteAccess,
    /// What the guest reads through `wasi:config/store`.
    pub config: ConfigVars,
}

/// The component's variables, for `wasi:config/store` and Spin's
/// `variables` interface. Debug output shows nothing: values may be
/// secrets.
#[derive(Clone, Default)]
pub struct ConfigVars {
    pub wasi: Arc<wasmtime_wasi_config::WasiConfigVariables>,
    values: Arc<std::collections::HashMap<String, String>>,
}

impl ConfigVars {
    pub fn new<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        let values: std::collections::HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut wasi = wasmtime_wasi_config::WasiConfigVariables::new();
        for (k, v) in &values {
            wasi.insert(k.as_str(), v.as_str());
        }
        Self {
            wasi: Arc::new(wasi),
            values: Arc::new(values),
        }
    }

    /// The value of a variable granted to the component.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every variable, sorted by name.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }
}

impl std::fmt::Debug for ConfigVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigVars(<redacted>)")
    }
}

impl Grants {
    /// Applies the grants to a WASI context under construction.
    pub fn apply(&self, b: &mut WasiCtxBuilder) -> anyhow::Result<()> {
        for d in &self.dirs {
            let perms = if d.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&d.host, &d.guest, perms)
                .map_err(|e| anyhow::anyhow!("cannot grant directory {}: {e}", d.host.display()))?;
        }
        if self.env_inherit {
            b.inherit_env();
        }
        if !self.env.is_empty() {
            b.envs(&self.env);
        }
        if !self.args.is_empty() {
            b.args(&self.args);
        }
        match &self.net {
            NetGrant::None => {
                b.allow_tcp(false)
                    .allow_udp(false)
                    .allow_ip_name_lookup(false);
                b.socket_addr_check(|_, _| Box::pin(async { false }));
            }
            NetGrant::All => {
                b.inherit_network()
                    .allow_tcp(true)
                    .allow_udp(true)
                    .allow_ip_name_lookup(true);
            }
            NetGrant::Only(rules) => {
                let rules: Arc<[AddrRule]> = rules.clone().into();
                b.allow_tcp(true)
                    .allow_udp(true)
                    .allow_ip_name_lookup(false);
                b.socket_addr_check(move |addr, usage| {
                    let ok = match usage {
                        // Implicit binds use the wildcard address.
                        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind
                            if addr.ip().is_unspecified() =>
                        {
                            true
                        }
                        _ => rules.iter().any(|r| r.matches(&addr)),
                    };
                    Box::pin(async move { ok })
                });
            }
        }
        Ok(())
    }

    /// Checks that every granted directory exists, so the error comes at
    /// start-up rather than on the first request.
    pub fn check(&self) -> Result<(), String> {
        for d in &self.dirs {
            if !d.host.is_dir() {
                return Err(format!(
                    "cannot grant directory {}: it does not exist or is not a directory",
                    d.host.display()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_grants() {
        assert_eq!(
            DirGrant::parse("/data::/mnt:ro").unwrap(),
            DirGrant {
                host: "/data".into(),
                guest: "/mnt".into(),
                read_only: true
            }
        );
        assert_eq!(
            DirGrant::parse("./x").unwrap(),
            DirGrant {
                host: "./x".into(),
                guest: "./x".into(),
                read_only: false
            }
        );
        assert!(DirGrant::parse("::/g").is_err());
    }

    #[test]
    fn addr_rules() {
        let r = AddrRule::parse("127.0.0.1:8080").unwrap();
        assert!(r.matches(&"127.0.0.1:8080".parse().unwrap()));
        assert!(!r.matches(&"127.0.0.1:8081".parse().unwrap()));
        let r = AddrRule::parse("10.0.0.0/8").unwrap();
        assert!(r.matches(&"10.2.3.4:1".parse().unwrap()));
        assert!(!r.matches(&"11.2.3.4:1".parse().unwrap()));
        let r = AddrRule::parse("*:53").unwrap();
        assert!(r.matches(&"8.8.8.8:53".parse().unwrap()));
        let r = AddrRule::parse("[::1]:80").unwrap();
        assert!(r.matches(&"[::1]:80".parse().unwrap()));
        assert!(AddrRule::parse("localhost").is_err());
        assert!(AddrRule::parse("1.2.3.4/40").is_err());
    }

    #[test]
    fn outbound_rules() {
        let r = OutboundRule::parse("https://api.example.com").unwrap();
        assert!(r.allows("https", "api.example.com", 443));
        assert!(r.allows("https", "API.example.com", 443));
        assert!(!r.allows("http", "api.example.com", 443));
        assert!(!r.allows("https", "api.example.com", 8443));
        assert!(!r.allows("https", "evil.com", 443));
        let r = OutboundRule::parse("http://127.0.0.1:8080").unwrap();
        assert!(r.allows("http", "127.0.0.1", 8080));
        let r = OutboundRule::parse("https://*.example.com").unwrap();
        assert!(r.allows("https", "a.b.example.com", 443));
        assert!(!r.allows("https", "example.com", 443));
        assert!(!r.allows("https", "badexample.com", 443));
        let r = OutboundRule::parse("*://localhost:*").unwrap();
        assert!(r.allows("http", "localhost", 1234));
        assert!(OutboundRule::parse("*").unwrap().allows("https", "x", 1));
        assert!(OutboundRule::parse("example.com").is_err());
        assert!(OutboundRule::parse("ftp://example.com").is_err());
        assert!(OutboundRule::parse("https://ex*ample.com").is_err());
        assert!(OutboundRule::parse("https://example.com/path").is_err());
    }
}
