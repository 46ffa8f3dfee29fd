//! A real `docker-registry` (Debian's Docker distribution 2.8) on loopback.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `docker-registry` on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(htpasswd: Option<&str>) -> Registry {
        // A port picked free may be taken by another test's server before
        // this registry binds it: then the registry exits, and a connect
        // may even reach the other server. So the registry must still be
        // running once its port answers, else it starts again elsewhere.
        for _ in 0..10 {
            if let Some(r) = Self::try_start(htpasswd) {
                return r;
            }
        }
        panic!("docker-registry did not start");
    }

    fn try_start(htpasswd: Option<&str>) -> Option<Registry> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            storage.display()
        );
        if let Some(entry) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, entry).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wasmops-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(which("docker-registry"))
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("cannot start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            if std::net::TcpStream::connect(&host).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        Some(Registry {
            child,
            host,
            storage,
            _dir: dir,
        })
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host)
    }

    /// The file the registry keeps a blob in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The tags of a repository, sorted, from the registry's storage.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let dir = self
            .storage
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags");
        let mut tags: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// A manifest straight from the registry's API.
    pub fn manifest(&self, repo: &str, reference: &str) -> Value {
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import sys,urllib.request as u\n\
                 r=u.Request(sys.argv[1],headers={'Accept':'application/vnd.oci.image.manifest.v1+json'})\n\
                 sys.stdout.write(u.urlopen(r).read().decode())",
            )
            .arg(format!("http://{}/v2/{repo}/manifests/{reference}", self.host))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    pub fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let out = Command::new("python3")
            .arg("-c")
            .arg("import sys,urllib.request as u\nsys.stdout.buffer.write(u.urlopen(sys.argv[1]).read())")
            .arg(format!("http://{}/v2/{repo}/blobs/{digest}", self.host))
            .output()
            .unwrap();
        out.stdout
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (.ci/run installs it)"))
}
