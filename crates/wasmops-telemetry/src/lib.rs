//! Metrics for wasmops: one registry per process, families registered once,
//! and per-component handles resolved once so the request path only bumps
//! atomics. Exposed in the Prometheus text format by [`Metrics::encode`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

pub mod access;
pub mod trace;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use prometheus_client::metrics::gauge::Gauge;

/// Every metric name wasmops exposes (as it appears in the exposition).
/// The shipped dashboards must use only these.
pub const METRIC_NAMES: &[&str] = &[
    "wasmops_http_requests_total",
    "wasmops_http_request_duration_seconds",
    "wasmops_instantiation_duration_seconds",
    "wasmops_instances_in_use",
    "wasmops_guest_failures_total",
    "wasmops_outbound_requests_total",
    "wasmops_kv_operations_total",
    "wasmops_kv_operation_duration_seconds",
    "wasmops_artifact_cache_lookups_total",
    "wasmops_instance_memory_high_water_bytes",
    "wasmops_process_resident_memory_bytes",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    app: String,
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    app: String,
    component: String,
    route: String,
    status_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    app: String,
    component: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    app: String,
    component: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    app: String,
    component: String,
    host: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KvLabels {
    app: String,
    component: String,
    store: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KvResultLabels {
    app: String,
    component: String,
    store: String,
    op: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: String,
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~13 s
    Histogram::new(exponential_buckets(0.000_025, 2.0, 20))
}

fn memory_histogram() -> Histogram {
    // 64 KiB .. 4 GiB
    Histogram::new(exponential_buckets(65536.0, 2.0, 17))
}

/// Which series each app's components get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppDetail {
    /// Every family per app and component.
    #[default]
    All,
    /// Requests, durations, failures and instances in use per app and
    /// component; instantiation times and memory high-water marks for the
    /// whole process, under empty `app` and `component` labels. For a node
    /// of thousands of apps: 43 series fewer each (two histograms).
    Requests,
}

/// A counter whose series appears with its first increment: most apps
/// never trap or answer 1xx, and a node of thousands of apps would
/// otherwise carry a zero series for every such outcome of every app.
#[derive(Clone)]
pub struct LazyCounter(Arc<LazyInner>);

struct LazyInner {
    counter: OnceLock<Counter>,
    make: Box<dyn Fn() -> Counter + Send + Sync>,
}

impl LazyCounter {
    fn new(make: impl Fn() -> Counter + Send + Sync + 'static) -> Self {
        Self(Arc::new(LazyInner {
            counter: OnceLock::new(),
            make: Box::new(make),
        }))
    }

    pub fn inc(&self) {
        self.0.counter.get_or_init(&self.0.make).inc();
    }
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    detail: AppDetail,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    instantiation: Family<ComponentLabels, Histogram, fn() -> Histogram>,
    in_use: Family<ComponentLabels, Gauge>,
    failures: Family<FailureLabels, Counter>,
    outbound: Family<OutboundLabels, Counter>,
    kv_ops: Family<KvResultLabels, Counter>,
    kv_duration: Family<KvLabels, Histogram, fn() -> Histogram>,
    cache: Family<CacheLabels, Counter>,
    memory_high_water: Family<ComponentLabels, Histogram, fn() -> Histogram>,
    resident: Gauge,
    /// Held while a lazily made series is created and while a component's
    /// series are forgotten, so that neither happens halfway through the
    /// other.
    lazy: std::sync::Mutex<()>,
    /// Series made on the way (key-value stores, outbound hosts), by app,
    /// so `forget_app` can drop them.
    on_the_way: std::sync::Mutex<HashMap<String, HashSet<OnTheWay>>>,
}

/// A series made while serving, rather than when a component is set up.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum OnTheWay {
    Kv(KvResultLabels),
    KvDuration(KvLabels),
    Outbound(OutboundLabels),
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family per app and component.
    pub fn new() -> Self {
        Self::with_detail(AppDetail::All)
    }

    pub fn with_detail(detail: AppDetail) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "wasmops_http_requests",
            "HTTP requests answered, by app, component, route and status class",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "wasmops_http_request_duration_seconds",
            "Time from receiving a request to sending its response head",
            request_duration.clone(),
        );
        let instantiation =
            Family::<ComponentLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "wasmops_instantiation_duration_seconds",
            "Time to create a store and instantiate a component for one request",
            instantiation.clone(),
        );
        let in_use = Family::<ComponentLabels, Gauge>::default();
        registry.register(
            "wasmops_instances_in_use",
            "Component instances running now",
            in_use.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "wasmops_guest_failures",
            "Guest failures by kind: trap, timeout, memory_limit, aborted_response (a response cut off after its head was sent)",
            failures.clone(),
        );
        let outbound = Family::<OutboundLabels, Counter>::default();
        registry.register(
            "wasmops_outbound_requests",
            "Outbound HTTP requests from guests by destination host and result: allowed, denied",
            outbound.clone(),
        );
        let kv_ops = Family::<KvResultLabels, Counter>::default();
        registry.register(
            "wasmops_kv_operations",
            "Key-value operations by store, operation and result: ok, error",
            kv_ops.clone(),
        );
        let kv_duration = Family::<KvLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "wasmops_kv_operation_duration_seconds",
            "Time of one key-value operation, as the guest waits for it",
            kv_duration.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "wasmops_artifact_cache_lookups",
            "Compiled-artifact cache lookups by result: hit, miss, rebuilt, disabled",
            cache.clone(),
        );
        let memory_high_water =
            Family::<ComponentLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                memory_histogram,
            );
        registry.register(
            "wasmops_instance_memory_high_water_bytes",
            "Highest linear memory an instance reached, all its memories counted",
            memory_high_water.clone(),
        );
        let resident = Gauge::default();
        registry.register(
            "wasmops_process_resident_memory_bytes",
            "Resident memory of the wasmops process",
            resident.clone(),
        );
        Self {
            registry,
            detail,
            requests,
            request_duration,
            instantiation,
            in_use,
            failures,
            outbound,
            kv_ops,
            kv_duration,
            cache,
            memory_high_water,
            resident,
            lazy: std::sync::Mutex::new(()),
            on_the_way: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Resolves the handles of one component once.
    pub fn component(
        self: &Arc<Self>,
        app: &str,
        component: &str,
        route: &str,
    ) -> ComponentMetrics {
        let c = ComponentLabels {
            app: app.into(),
            component: component.into(),
        };
        let per_process = ComponentLabels {
            app: String::new(),
            component: String::new(),
        };
        let detailed = match self.detail {
            AppDetail::All => &c,
            AppDetail::Requests => &per_process,
        };
        let live = RouteLabels {
            app: app.into(),
            component: component.into(),
            route: route.into(),
        };
        let status = |class: &str| {
            self.lazy(
                &live,
                |m| &m.requests,
                RequestLabels {
                    app: app.into(),
                    component: component.into(),
                    route: route.into(),
                    status_class: class.into(),
                },
            )
        };
        let failure = |kind: &str| {
            self.lazy(
                &live,
                |m| &m.failures,
                FailureLabels {
                    app: app.into(),
                    component: component.into(),
                    kind: kind.into(),
                },
            )
        };
        ComponentMetrics {
            metrics: self.clone(),
            app: app.into(),
            component: component.into(),
            by_status: [
                status("1xx"),
                status("2xx"),
                status("3xx"),
                status("4xx"),
                status("5xx"),
            ],
            duration: self.request_duration.get_or_create(&live).clone(),
            instantiation: self.instantiation.get_or_create(detailed).clone(),
            in_use: self.in_use.get_or_create(&c).clone(),
            traps: failure("trap"),
            timeouts: failure("timeout"),
            memory_limits: failure("memory_limit"),
            aborted: failure("aborted_response"),
            memory_high_water: self.memory_high_water.get_or_create(detailed).clone(),
        }
    }

    /// Drops the series `component` made for (`app`, `component`, `route`),
    /// so a deleted app leaves no metrics behind. Series made on the way
    /// (outbound hosts, key-value stores) go with `forget_app`.
    pub fn forget_component(&self, app: &str, component: &str, route: &str) {
        let _no_lazy_series = self.lazy.lock().unwrap_or_else(|p| p.into_inner());
        let c = ComponentLabels {
            app: app.into(),
            component: component.into(),
        };
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            self.requests.remove(&RequestLabels {
                app: app.into(),
                component: component.into(),
                route: route.into(),
                status_class: class.into(),
            });
        }
        self.request_duration.remove(&RouteLabels {
            app: app.into(),
            component: component.into(),
            route: route.into(),
        });
        for kind in ["trap", "timeout", "memory_limit", "aborted_response"] {
            self.failures.remove(&FailureLabels {
                app: app.into(),
                component: component.into(),
                kind: kind.into(),
            });
        }
        self.instantiation.remove(&c);
        self.in_use.remove(&c);
        self.memory_high_water.remove(&c);
    }

    /// A counter of `family` under `labels`, made on its first increment
    /// unless the component of `live` has been forgotten by then.
    fn lazy<L>(
        self: &Arc<Self>,
        live: &RouteLabels,
        family: fn(&Self) -> &Family<L, Counter>,
        labels: L,
    ) -> LazyCounter
    where
        L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    {
        let (metrics, live) = (self.clone(), live.clone());
        LazyCounter::new(move || {
            metrics.unless_forgotten(&live, |m| family(m).get_or_create(&labels).clone())
        })
    }

    /// Makes a lazily created series, unless the component it belongs to
    /// (its duration series, made eagerly) has been forgotten meanwhile:
    /// a request still in flight when its app was deleted must not bring
    /// the app's series back. Then the counter counts, unexposed.
    fn unless_forgotten(&self, live: &RouteLabels, make: impl FnOnce(&Self) -> Counter) -> Counter {
        let _no_forgetting = self.lazy.lock().unwrap_or_else(|p| p.into_inner());
        if self.request_duration.get(live).is_some() {
            make(self)
        } else {
            Counter::default()
        }
    }

    /// Notes a series made while serving, the first time it is made.
    fn made_on_the_way(&self, app: &str, series: OnTheWay) {
        self.on_the_way
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_default()
            .insert(series);
    }

    /// Drops the series an app's key-value operations and outbound
    /// requests made (those of its components go with `forget_component`).
    pub fn forget_app(&self, app: &str) {
        let Some(seen) = self
            .on_the_way
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app)
        else {
            return;
        };
        for s in seen {
            match s {
                OnTheWay::Kv(l) => self.kv_ops.remove(&l),
                OnTheWay::KvDuration(l) => self.kv_duration.remove(&l),
                OnTheWay::Outbound(l) => self.outbound.remove(&l),
            };
        }
    }

    /// Counts one artifact-cache lookup.
    pub fn cache_lookup(&self, result: &str) {
        self.cache
            .get_or_create(&CacheLabels {
                result: result.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition (OpenMetrics text, as Prometheus reads it).
    pub fn encode(&self) -> String {
        self.resident.set(resident_bytes() as i64);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Per-component metric handles: bumping them touches only atomics.
#[derive(Clone)]
pub struct ComponentMetrics {
    metrics: Arc<Metrics>,
    app: String,
    component: String,
    by_status: [LazyCounter; 5],
    pub duration: Histogram,
    pub instantiation: Histogram,
    pub in_use: Gauge,
    pub traps: LazyCounter,
    pub timeouts: LazyCounter,
    pub memory_limits: LazyCounter,
    /// Responses cut off after their head was sent (the guest failed).
    pub aborted: LazyCounter,
    pub memory_high_water: Histogram,
}

impl ComponentMetrics {
    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn component(&self) -> &str {
        &self.component
    }

    /// Counts a response by its status class.
    pub fn response(&self, status: u16, seconds: f64) {
        let i = (status / 100).clamp(1, 5) as usize - 1;
        self.by_status[i].inc();
        self.duration.observe(seconds);
    }

    /// Counts an outbound request by host and result (`allowed`, `denied`).
    pub fn outbound(&self, host: &str, result: &str) {
        let labels = OutboundLabels {
            app: self.app.clone(),
            component: self.component.clone(),
            host: host.into(),
            result: result.into(),
        };
        if let Some(m) = self.metrics.outbound.get(&labels) {
            m.inc();
            return;
        }
        self.metrics
            .made_on_the_way(&self.app, OnTheWay::Outbound(labels.clone()));
        self.metrics.outbound.get_or_create(&labels).inc();
    }
}

impl ComponentMetrics {
    /// Counts a key-value operation and its duration.
    pub fn kv_operation(&self, store: &str, op: &str, result: &str, seconds: f64) {
        let counted = KvResultLabels {
            app: self.app.clone(),
            component: self.component.clone(),
            store: store.into(),
            op: op.into(),
            result: result.into(),
        };
        if self.metrics.kv_ops.get(&counted).is_none() {
            let timed = KvLabels {
                app: self.app.clone(),
                component: self.component.clone(),
                store: store.into(),
                op: op.into(),
            };
            self.metrics
                .made_on_the_way(&self.app, OnTheWay::KvDuration(timed));
            self.metrics
                .made_on_the_way(&self.app, OnTheWay::Kv(counted.clone()));
        }
        self.metrics.kv_ops.get_or_create(&counted).inc();
        self.metrics
            .kv_duration
            .get_or_create(&KvLabels {
                app: self.app.clone(),
                component: self.component.clone(),
                store: store.into(),
                op: op.into(),
            })
            .observe(seconds);
    }
}

/// Resident memory of this process, from /proc/self/statm.
pub fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped dashboard and Prometheus config use only our metric names.
    #[test]
    fn shipped_dashboard_uses_only_exposed_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dashboard =
            std::fs::read_to_string(root.join("deploy/grafana/wasmops-dashboard.json")).unwrap();
        let mut used = Vec::new();
        let mut rest = dashboard.as_str();
        while let Some(i) = rest.find("wasmops_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            used.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        assert!(used.len() >= 9, "{used:?}");
        for name in &used {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| METRIC_NAMES.contains(b))
                .unwrap_or(name);
            assert!(
                METRIC_NAMES.contains(&base),
                "the dashboard uses `{name}`, which wasmops does not expose"
            );
        }
        for name in METRIC_NAMES {
            assert!(
                used.iter().any(|u| u.starts_with(name)),
                "the dashboard never shows `{name}`"
            );
        }
        // Each panel query is also present in a live exposition.
        let m = Arc::new(Metrics::new());
        let c = m.component("a", "c", "/");
        c.response(200, 0.01);
        c.outbound("h", "allowed");
        c.kv_operation("default", "get", "ok", 0.0001);
        c.traps.inc();
        m.cache_lookup("hit");
        let text = m.encode();
        for name in &used {
            assert!(
                text.contains(name.as_str()),
                "`{name}` is not in the exposition"
            );
        }
    }

    #[test]
    fn outcomes_never_had_make_no_series_and_a_lean_app_keeps_two_families_to_the_process() {
        let series = |text: &str, app: &str| {
            text.lines()
                .filter(|l| !l.starts_with('#') && l.contains(&format!("app=\"{app}\"")))
                .count()
        };
        for (detail, per_app) in [(AppDetail::All, 68), (AppDetail::Requests, 25)] {
            let m = Arc::new(Metrics::with_detail(detail));
            let c = m.component("a", "c", "/");
            c.response(200, 0.001);
            c.instantiation.observe(0.00002);
            c.memory_high_water.observe(1e6);
            let text = m.encode();
            assert_eq!(series(&text, "a"), per_app, "{detail:?}:\n{text}");
            assert!(!text.contains("status_class=\"5xx\""), "{text}");
            assert!(!text.contains("wasmops_guest_failures_total{"), "{text}");
            let shared = r#"wasmops_instantiation_duration_seconds_count{app="",component=""} 1"#;
            assert_eq!(
                text.contains(shared),
                detail == AppDetail::Requests,
                "{text}"
            );
            // A failure and a new class appear when they happen.
            c.traps.inc();
            c.response(503, 0.001);
            let text = m.encode();
            assert!(
                text.contains(
                    r#"wasmops_guest_failures_total{app="a",component="c",kind="trap"} 1"#
                )
            );
            assert!(text.contains(r#"status_class="5xx"} 1"#));
            // Forgetting the component leaves nothing of the app, even
            // when a request still in flight then fails in a new way.
            m.forget_component("a", "c", "/");
            c.timeouts.inc();
            c.response(404, 0.001);
            assert_eq!(series(&m.encode(), "a"), 0);
            // Made again (a redeploy), it has its series again.
            let again = m.component("a", "c", "/");
            again.response(503, 0.001);
            assert!(m.encode().contains(r#"status_class="5xx"} 1"#));
        }
    }

    #[test]
    fn exposition_names_match_the_declared_list() {
        let m = Arc::new(Metrics::new());
        let c = m.component("app", "comp", "/");
        c.response(200, 0.001);
        c.response(503, 0.002);
        c.traps.inc();
        c.outbound("example.com", "denied");
        c.kv_operation("default", "get", "ok", 0.0001);
        c.instantiation.observe(0.00002);
        c.memory_high_water.observe(1e6);
        m.cache_lookup("hit");
        let text = m.encode();
        for name in METRIC_NAMES {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains(
            r#"wasmops_http_requests_total{app="app",component="comp",route="/",status_class="2xx"} 1"#
        ));
        assert!(text.contains(r#"status_class="5xx"} 1"#));
        assert!(resident_bytes() > 0);
    }
}
