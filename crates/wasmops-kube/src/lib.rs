//! The Kubernetes objects of a fleet of `wasmops node` pods: every pod can
//! serve every app (apps load on their first request), the apps are
//! declared in a ConfigMap the nodes follow (`--apps-dir`), and the fleet
//! is scaled by a HorizontalPodAutoscaler. No operator: plain objects for
//! `kubectl apply` or a GitOps repository.
//!
//! Output is deterministic: objects in a fixed order, keys sorted, one
//! YAML document per object (`yaml`), or a `v1/List` (`json`).

mod yaml;

use serde_json::{Map, Value, json};

pub use yaml::to_yaml;

/// Where the node keeps its state in the pod.
pub const DATA_DIR: &str = "/var/lib/wasmops";
/// Where the apps ConfigMap is mounted.
pub const APPS_DIR: &str = "/etc/wasmops/apps";
/// Where an app's Secret is mounted: `SECRETS_ROOT/APP`.
pub const SECRETS_ROOT: &str = "/etc/wasmops/secrets";
const TOKENS_DIR: &str = "/etc/wasmops/tokens";
const REGISTRY_DIR: &str = "/etc/wasmops/registry";
const HTTP_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9464;
/// The image's user (no passwd file in a scratch image: numeric).
pub const UID: u64 = 65532;

/// One app of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    /// The declaration (`NAME.toml`) as the nodes read it.
    pub declaration: String,
    /// Where the declaration expects a Secret of variables mounted
    /// (`secrets_dir`), if anywhere.
    pub secrets_dir: Option<String>,
}

/// Autoscaling bounds and targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autoscale {
    pub min: u32,
    pub max: u32,
    /// Average CPU utilisation, in percent of the request.
    pub cpu_percent: u32,
    /// Average HTTP requests per second per pod (a Pods metric served by
    /// an adapter from the nodes' `wasmops_http_requests_total`).
    pub requests_per_second: Option<u32>,
}

/// The fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// Names every object (`NAME`, `NAME-apps`, ...).
    pub name: String,
    pub namespace: Option<String>,
    pub create_namespace: bool,
    pub environment: Option<String>,
    pub image: String,
    pub replicas: u32,
    pub autoscale: Option<Autoscale>,
    /// Kubernetes quantities (`500m`, `1Gi`).
    pub cpu_request: String,
    pub memory_request: String,
    pub memory_limit: String,
    /// The node's drain on SIGTERM, in seconds; the pod's grace period is a
    /// few seconds longer.
    pub shutdown_grace_secs: u64,
    /// A Secret with the admin API's tokens file (key `tokens`).
    pub tokens_secret: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret for private registries.
    pub registry_secret: Option<String>,
    pub apps: Vec<App>,
}

/// Why a fleet cannot be rendered. One line with the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// Kubernetes object names: DNS labels.
pub fn valid_name(name: &str) -> bool {
    wasmops_units::dns_label(name) && !name.ends_with('-')
}

/// A size in bytes as a Kubernetes quantity (`Gi`, `Mi`, `Ki` when exact).
pub fn quantity(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

impl Fleet {
    fn check(&self) -> Result<(), RenderError> {
        let bad = |m: String| Err(RenderError(m));
        if !valid_name(&self.name) || self.name.len() > 40 {
            return bad(format!(
                "fleet name `{}`: use at most 40 lowercase letters, digits and `-`, starting with a letter",
                self.name
            ));
        }
        if let Some(ns) = &self.namespace
            && !valid_name(ns)
        {
            return bad(format!("namespace `{ns}` is not a valid name"));
        }
        if self.create_namespace && self.namespace.is_none() {
            return bad("--create-namespace needs --namespace NAME".into());
        }
        if self.image.trim().is_empty() {
            return bad("no image: give --image REF (build it from deploy/container/Containerfile, see docs/kubernetes.md)".into());
        }
        if self.image.chars().any(char::is_whitespace) {
            return bad(format!("image `{}` has whitespace", self.image));
        }
        if let Some(a) = &self.autoscale {
            if a.min == 0 || a.min > a.max {
                return bad(format!(
                    "autoscaling bounds {}..{}: give 1 <= --min-replicas <= --max-replicas",
                    a.min, a.max
                ));
            }
            if a.cpu_percent == 0 || a.cpu_percent > 100 {
                return bad("--cpu-target is a percentage of the CPU request: 1 to 100".into());
            }
        } else if self.replicas == 0 {
            return bad("--replicas must be at least 1".into());
        }
        if self.apps.is_empty() {
            return bad("no apps: give a reference, an app with --reference, or --apps DIR".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.apps {
            if !valid_name(&a.name) {
                return bad(format!("app name `{}` is not a valid name", a.name));
            }
            if !seen.insert(&a.name) {
                return bad(format!("app `{}` is declared twice", a.name));
            }
        }
        Ok(())
    }

    fn labels(&self) -> Value {
        let mut l = json!({
            "app.kubernetes.io/name": "wasmops-node",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": "node",
            "app.kubernetes.io/managed-by": "wasmops",
        });
        if let Some(e) = &self.environment {
            l["environment"] = json!(e);
        }
        l
    }

    fn selector(&self) -> Value {
        json!({
            "app.kubernetes.io/name": "wasmops-node",
            "app.kubernetes.io/instance": self.name,
        })
    }

    fn metadata(&self, name: &str) -> Value {
        let mut m = json!({ "name": name, "labels": self.labels() });
        if let Some(ns) = &self.namespace {
            m["namespace"] = json!(ns);
        }
        m
    }

    /// The Secret an app's variables come from.
    pub fn app_secret(&self, app: &str) -> String {
        format!("{}-{app}", self.name)
    }

    /// Every object, in apply order.
    pub fn render(&self) -> Result<Vec<Value>, RenderError> {
        self.check()?;
        let mut out = Vec::new();
        if self.create_namespace
            && let Some(ns) = &self.namespace
        {
            out.push(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": ns, "labels": self.labels() },
            }));
        }
        let mut data = Map::new();
        for a in &self.apps {
            data.insert(format!("{}.toml", a.name), json!(a.declaration));
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.metadata(&format!("{}-apps", self.name)),
            "data": data,
        }));
        out.push(self.deployment());
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(&self.name),
            "spec": {
                "type": "ClusterIP",
                "selector": self.selector(),
                "ports": [
                    { "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" },
                    { "name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP" },
                ],
            },
        }));
        if let Some(a) = &self.autoscale {
            let mut metrics = vec![json!({
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": { "type": "Utilization", "averageUtilization": a.cpu_percent },
                },
            })];
            if let Some(rps) = a.requests_per_second {
                metrics.push(json!({
                    "type": "Pods",
                    "pods": {
                        "metric": { "name": "wasmops_http_requests_per_second" },
                        "target": { "type": "AverageValue", "averageValue": rps.to_string() },
                    },
                }));
            }
            out.push(json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": self.metadata(&self.name),
                "spec": {
                    "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": self.name },
                    "minReplicas": a.min,
                    "maxReplicas": a.max,
                    "metrics": metrics,
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 300,
                            "policies": [{ "type": "Pods", "value": 1, "periodSeconds": 60 }],
                        },
                    },
                },
            }));
        }
        out.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.metadata(&self.name),
            "spec": {
                "maxUnavailable": 1,
                "selector": { "matchLabels": self.selector() },
            },
        }));
        Ok(out)
    }

    fn deployment(&self) -> Value {
        let mut args = vec![
            "node".to_string(),
            "--listen".into(),
            format!("0.0.0.0:{HTTP_PORT}"),
            "--admin-listen".into(),
            format!("0.0.0.0:{ADMIN_PORT}"),
            "--data-dir".into(),
            DATA_DIR.into(),
            "--apps-dir".into(),
            APPS_DIR.into(),
            "--shutdown-grace".into(),
            format!("{}s", self.shutdown_grace_secs),
            "--log-format".into(),
            "json".into(),
        ];
        let mut mounts = vec![
            json!({ "name": "apps", "mountPath": APPS_DIR, "readOnly": true }),
            json!({ "name": "data", "mountPath": DATA_DIR }),
            json!({ "name": "tmp", "mountPath": "/tmp" }),
        ];
        let mut volumes = vec![
            json!({ "name": "apps", "configMap": { "name": format!("{}-apps", self.name) } }),
            // The artifact cache and pulled apps: rebuilt by a new pod.
            json!({ "name": "data", "emptyDir": {} }),
            json!({ "name": "tmp", "emptyDir": { "sizeLimit": "64Mi" } }),
        ];
        let mut env = vec![];
        if let Some(s) = &self.tokens_secret {
            args.push("--tokens-file".into());
            args.push(format!("{TOKENS_DIR}/tokens"));
            mounts.push(json!({ "name": "tokens", "mountPath": TOKENS_DIR, "readOnly": true }));
            volumes.push(json!({
                "name": "tokens",
                "secret": { "secretName": s, "defaultMode": 0o400 },
            }));
        }
        if let Some(s) = &self.registry_secret {
            env.push(json!({ "name": "DOCKER_CONFIG", "value": REGISTRY_DIR }));
            mounts.push(json!({ "name": "registry", "mountPath": REGISTRY_DIR, "readOnly": true }));
            volumes.push(json!({
                "name": "registry",
                "secret": {
                    "secretName": s,
                    "defaultMode": 0o400,
                    "items": [{ "key": ".dockerconfigjson", "path": "config.json" }],
                },
            }));
        }
        for a in &self.apps {
            if let Some(dir) = &a.secrets_dir {
                let v = format!("secrets-{}", a.name);
                mounts.push(json!({ "name": v, "mountPath": dir, "readOnly": true }));
                volumes.push(json!({
                    "name": v,
                    // Optional: the app is reported until its Secret exists.
                    "secret": { "secretName": self.app_secret(&a.name), "defaultMode": 0o400, "optional": true },
                }));
            }
        }
        let probe = |path: &str, period: u32, failures: u32| {
            json!({
                "httpGet": { "path": path, "port": "admin" },
                "periodSeconds": period,
                "timeoutSeconds": 2,
                "failureThreshold": failures,
            })
        };
        let mut container = json!({
            "name": "node",
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "ports": [
                { "name": "http", "containerPort": HTTP_PORT, "protocol": "TCP" },
                { "name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP" },
            ],
            // Ready once the declared apps are compiled; a pod that
            // compiles long is given up to 10 minutes before liveness.
            "startupProbe": probe("/healthz", 2, 300),
            "readinessProbe": probe("/readyz", 2, 3),
            "livenessProbe": probe("/healthz", 10, 3),
            "resources": {
                "requests": { "cpu": self.cpu_request, "memory": self.memory_request },
                "limits": { "memory": self.memory_limit },
            },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "runAsUser": UID,
                "runAsGroup": UID,
                "capabilities": { "drop": ["ALL"] },
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "volumeMounts": mounts,
        });
        if !env.is_empty() {
            container["env"] = json!(env);
        }
        let spread = |key: &str| {
            json!({
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": { "matchLabels": self.selector() },
            })
        };
        let mut spec = json!({
            "revisionHistoryLimit": 5,
            "selector": { "matchLabels": self.selector() },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 },
            },
            "template": {
                "metadata": {
                    "labels": self.labels(),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": ADMIN_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": self.shutdown_grace_secs + 5,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "topologySpreadConstraints": [
                        spread("kubernetes.io/hostname"),
                        spread("topology.kubernetes.io/zone"),
                    ],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        });
        // With an autoscaler, the replica count is its to set: applying the
        // manifests again must not reset it.
        if self.autoscale.is_none() {
            spec["replicas"] = json!(self.replicas);
        }
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(&self.name),
            "spec": spec,
        })
    }
}

/// The objects as one JSON `v1/List`.
pub fn to_json(objects: &[Value]) -> String {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
    serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Fleet {
        Fleet {
            name: "web".into(),
            namespace: Some("apps".into()),
            create_namespace: true,
            environment: Some("production".into()),
            image: "registry.example.com/wasmops-node:1".into(),
            replicas: 2,
            autoscale: Some(Autoscale {
                min: 2,
                max: 10,
                cpu_percent: 70,
                requests_per_second: Some(500),
            }),
            cpu_request: "500m".into(),
            memory_request: "512Mi".into(),
            memory_limit: "2Gi".into(),
            shutdown_grace_secs: 25,
            tokens_secret: Some("web-tokens".into()),
            registry_secret: None,
            apps: vec![App {
                name: "shop".into(),
                declaration: "reference = \"r/shop:1\"\n".into(),
                secrets_dir: Some("/etc/wasmops/secrets/shop".into()),
            }],
        }
    }

    #[test]
    fn objects_in_order_and_deterministic() {
        let f = fleet();
        let objects = f.render().unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ConfigMap",
                "Deployment",
                "Service",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget"
            ]
        );
        assert_eq!(to_yaml(&objects), to_yaml(&f.render().unwrap()));
        let d = &objects[2];
        assert!(d["spec"].get("replicas").is_none(), "the HPA owns replicas");
        assert_eq!(
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            30
        );
    }

    #[test]
    fn bad_options_are_one_error() {
        let mut f = fleet();
        f.image = String::new();
        assert!(f.render().unwrap_err().to_string().contains("--image"));
        let mut f = fleet();
        f.autoscale.as_mut().unwrap().min = 11;
        assert!(
            f.render()
                .unwrap_err()
                .to_string()
                .contains("--min-replicas")
        );
        let mut f = fleet();
        f.namespace = None;
        assert!(f.render().unwrap_err().to_string().contains("--namespace"));
        let mut f = fleet();
        f.apps.push(f.apps[0].clone());
        assert!(f.render().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity(512 << 20), "512Mi");
        assert_eq!(quantity(2 << 30), "2Gi");
        assert_eq!(quantity(1536 << 20), "1536Mi");
        assert_eq!(quantity(1000), "1000");
    }
}
