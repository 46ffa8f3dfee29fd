//! Worker processes: `--workers N` serves one listener from N processes.
//!
//! Why processes and not only threads: a guest that writes to many pages of
//! its memory image (an interpreter: CPython, SpiderMonkey) takes a
//! copy-on-write fault on each, and every such fault on a page that was
//! mapped must flush that page from the TLB of every core running the same
//! address space, by inter-processor interrupt. With one process on every
//! core, those flushes cost a Python hello-world as much as the second core
//! gives it. Each worker process has its own address space, so a fault
//! flushes only its own core. See ARCHITECTURE.md, "Worker processes".
//!
//! The supervisor (the process the user started) binds the listeners, then
//! starts each worker as the same executable with the same arguments and
//! `WASMOPS_WORKER=<index>/<count>` in its environment. The app listener is
//! passed as file descriptor 3; the worker answers on descriptor 4 with
//! `ready <admin address>` once it serves. Worker 0 starts alone, so that it
//! compiles into the artifact cache and the others load from it. The
//! supervisor keeps the admin endpoints: `/metrics` gathers every worker's
//! metrics added up as one server's, `/readyz` is ready while every worker is.
//! A worker that dies is started again; SIGINT/SIGTERM is passed on to every
//! worker, which drains as a single server does.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::ServeOptions;

/// The environment variable that makes a process a worker.
pub const WORKER_ENV: &str = "WASMOPS_WORKER";
/// The app listener's descriptor in a worker.
const LISTENER_FD: RawFd = 3;
/// The descriptor a worker reports readiness on.
const READY_FD: RawFd = 4;

/// This process's place among the workers, when it is one.
#[derive(Debug, Clone, Copy)]
pub struct Worker {
    pub index: usize,
    pub count: usize,
}

/// The worker this process is, from its environment (read once).
pub fn this_worker() -> Option<Worker> {
    static WORKER: std::sync::OnceLock<Option<Worker>> = std::sync::OnceLock::new();
    *WORKER.get_or_init(|| {
        let v = std::env::var(WORKER_ENV).ok()?;
        let (i, n) = v.split_once('/')?;
        let (index, count) = (i.parse().ok()?, n.parse().ok()?);
        (index < count).then_some(Worker { index, count })
    })
}

/// The number of worker processes a `--workers` value asks for: a number,
/// or `auto` for one per core.
pub fn parse_workers(s: &str) -> Result<usize, String> {
    if s == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (or `auto`)".to_string()),
        Ok(n) if n > 256 => Err("at most 256 worker processes".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is neither a whole number nor `auto`")),
    }
}

/// The worker processes a server starts when `--workers` is not given: one
/// per core (the cgroup's CPU quota counted), no more than leave each
/// worker a share of `budget` that holds one instance at `largest_limit`.
pub fn default_count(budget: u64, largest_limit: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = usize::try_from(budget / largest_limit.max(1)).unwrap_or(usize::MAX);
    cores.min(by_memory).clamp(1, 256)
}

/// In a worker: the app listener the supervisor passed down.
pub(crate) fn inherited_listener() -> anyhow::Result<tokio::net::TcpListener> {
    // SAFETY: the supervisor put the listening socket at this descriptor
    // (and nothing else in this process owns it) before starting us.
    let std = unsafe { std::net::TcpListener::from_raw_fd(LISTENER_FD) };
    std.set_nonblocking(true)
        .context("worker: the inherited listener is not a socket")?;
    // FD_CLOEXEC, so that nothing this worker starts inherits it.
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(LISTENER_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    tokio::net::TcpListener::from_std(std).context("worker: cannot use the inherited listener")
}

/// In a worker: tells the supervisor it serves, and where its own admin
/// endpoints answer.
pub(crate) fn report_ready(admin: Option<SocketAddr>) {
    // SAFETY: the supervisor put the write end of a pipe at this descriptor;
    // we take it over and close it once written.
    let mut f = unsafe { std::fs::File::from_raw_fd(READY_FD) };
    let line = match admin {
        Some(a) => format!("ready {a}\n"),
        None => "ready -\n".to_string(),
    };
    let _ = std::io::Write::write_all(&mut f, line.as_bytes());
}

/// One worker as the supervisor sees it.
struct Slot {
    pid: Option<u32>,
    admin: Option<SocketAddr>,
    ready: bool,
}

struct Shared {
    slots: Mutex<Vec<Slot>>,
    /// Set once the workers are being stopped.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Workers started again after they exited.
    restarts: std::sync::atomic::AtomicU64,
}

/// Runs `count` worker processes on the bound listeners until SIGINT or
/// SIGTERM, then stops them and waits for each to drain. `env` is added to
/// each worker's environment (what the supervisor resolved once, for all
/// of them). Returns the exit
/// status: a worker that fails before it ever served (a compile error, a
/// bad flag) ends the supervisor with its status, its message already on
/// stderr.
pub fn supervise(
    tokio: &tokio::runtime::Runtime,
    bound: crate::hosting::Bound,
    count: usize,
    env: Vec<(String, String)>,
) -> anyhow::Result<i32> {
    let _enter = tokio.enter();
    let listener = bound.listener;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        slots: Mutex::new(
            (0..count)
                .map(|_| Slot {
                    pid: None,
                    admin: None,
                    ready: false,
                })
                .collect(),
        ),
        stopping: tokio::sync::watch::Sender::new(false),
        restarts: std::sync::atomic::AtomicU64::new(0),
    });
    let exe = std::env::current_exe().context("cannot find this executable to start workers")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (exits_tx, mut exits) = tokio::sync::mpsc::unbounded_channel();
    let spawn = {
        let shared = shared.clone();
        let fd = listener.as_raw_fd();
        move |index: usize| {
            let worker = Command {
                exe: &exe,
                args: &args,
                env: &env,
                listener: fd,
            };
            spawn_worker(&worker, index, count, &shared, exits_tx.clone())
        }
    };
    tokio.block_on(async move {
        // Worker 0 alone first: it fills the artifact cache.
        for i in 0..count {
            let ready = spawn(i)?;
            if !wait_ready(ready, &shared, i).await {
                let status = wait_exit(&mut exits, &shared, i).await;
                stop_all(&mut exits, &shared).await;
                return Ok(exit_code(status));
            }
        }
        let admin_task = bound.admin.map(|al| {
            if let Ok(a) = al.local_addr() {
                eprintln!("wasmops: admin on http://{a}/");
            }
            let shared = shared.clone();
            let stopped = shared.clone();
            tokio::spawn(crate::serve(
                al,
                move |req: http::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move { admin(&shared, &req).await }
                },
                ServeOptions {
                    shutdown_grace: Duration::from_secs(1),
                    secondary: true,
                    ..ServeOptions::default()
                },
                async move {
                    let _ = stopped.stopping.subscribe().wait_for(|s| *s).await;
                },
            ))
        });
        eprintln!("wasmops: {count} worker processes");
        eprintln!("wasmops: serving http://{addr}/");
        tracing::info!(workers = count, "serving on http://{addr}/");

        // Watch the workers until a signal: one that exits is started again.
        let mut signal = std::pin::pin!(crate::shutdown_signal());
        let mut failed = false;
        loop {
            tokio::select! {
                _ = &mut signal => break,
                Some((i, status)) = exits.recv() => {
                    mark(&shared, i, None, None, false);
                    tracing::error!(worker = i, status = %status.map_or("unknown".into(), |s| s.to_string()), "a worker process exited; starting it again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    shared.restarts.fetch_add(1, Ordering::Relaxed);
                    let up = match spawn(i) {
                        Ok(ready) => wait_ready(ready, &shared, i).await,
                        Err(e) => {
                            tracing::error!(worker = i, error = %e, "cannot start the worker again");
                            false
                        }
                    };
                    if !up {
                        tracing::error!(worker = i, "the worker did not come up again; stopping");
                        failed = true;
                        break;
                    }
                }
            }
        }
        tracing::info!("shutting down: stopping the worker processes");
        stop_all(&mut exits, &shared).await;
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        tracing::info!(workers = count, "stopped");
        anyhow::Ok(if failed { 1 } else { 0 })
    })
}

type Exits = tokio::sync::mpsc::UnboundedReceiver<(usize, Option<std::process::ExitStatus>)>;

/// How a worker is started: this executable, its arguments, the added
/// environment and the listener to pass down.
struct Command<'a> {
    exe: &'a std::path::Path,
    args: &'a [std::ffi::OsString],
    env: &'a [(String, String)],
    listener: RawFd,
}

/// Starts worker `index`; a task reports its exit on `exits`. Returns the
/// read end of its readiness pipe.
fn spawn_worker(
    worker: &Command,
    index: usize,
    count: usize,
    shared: &Shared,
    exits: tokio::sync::mpsc::UnboundedSender<(usize, Option<std::process::ExitStatus>)>,
) -> anyhow::Result<tokio::fs::File> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the array with two new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe for a worker");
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_fd = write.as_raw_fd();
    let listener = worker.listener;
    let mut cmd = tokio::process::Command::new(worker.exe);
    cmd.args(worker.args)
        .envs(worker.env.iter().map(|(k, v)| (k, v)))
        .env(WORKER_ENV, format!("{index}/{count}"))
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls run: dup2,
    // fcntl, setpgid, prctl.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(listener, LISTENER_FD), (write_fd, READY_FD)] {
                if from == to {
                    if libc::fcntl(to, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Its own process group: a Ctrl-C reaches the supervisor, which
            // passes one SIGTERM on. And it dies with the supervisor.
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start a worker process")?;
    drop(write);
    mark(shared, index, child.id(), None, false);
    tokio::spawn(async move {
        let status = child.wait().await.ok();
        let _ = exits.send((index, status));
    });
    Ok(tokio::fs::File::from_std(std::fs::File::from(read)))
}

/// Waits for a worker's `ready` line; false when it exited first.
async fn wait_ready(pipe: tokio::fs::File, shared: &Shared, index: usize) -> bool {
    let mut line = String::new();
    match tokio::io::BufReader::new(pipe).read_line(&mut line).await {
        Ok(n) if n > 0 => {
            let admin = line
                .trim()
                .strip_prefix("ready ")
                .and_then(|a| a.parse::<SocketAddr>().ok());
            let pid = shared.slots.lock().unwrap_or_else(|p| p.into_inner())[index].pid;
            mark(shared, index, pid, admin, true);
            true
        }
        _ => false,
    }
}

fn mark(shared: &Shared, index: usize, pid: Option<u32>, admin: Option<SocketAddr>, ready: bool) {
    let mut slots = shared.slots.lock().unwrap_or_else(|p| p.into_inner());
    slots[index] = Slot { pid, admin, ready };
}

/// Waits for worker `index` to exit (other exits meanwhile are recorded).
async fn wait_exit(
    exits: &mut Exits,
    shared: &Shared,
    index: usize,
) -> Option<std::process::ExitStatus> {
    while let Some((i, status)) = exits.recv().await {
        mark(shared, i, None, None, false);
        if i == index {
            return status;
        }
    }
    None
}

/// SIGTERM to every running worker, then waits for each (they drain first).
async fn stop_all(exits: &mut Exits, shared: &Shared) {
    shared.stopping.send_replace(true);
    let pids: Vec<(usize, u32)> = {
        let slots = shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.pid.map(|p| (i, p)))
            .collect()
    };
    for (_, pid) in &pids {
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
    }
    let mut left = pids.len();
    while left > 0 {
        match exits.recv().await {
            Some((i, _)) => {
                mark(shared, i, None, None, false);
                left -= 1;
            }
            None => break,
        }
    }
}

fn exit_code(status: Option<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        None => 1,
    }
}

/// The supervisor's admin endpoints: every worker's metrics, gathered.
async fn admin<B>(shared: &Shared, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (all_ready, ready, admins) = {
        let slots = shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        (
            !*shared.stopping.borrow() && slots.iter().all(|s| s.ready),
            slots.iter().filter(|s| s.ready).count(),
            slots.iter().map(|s| s.admin).collect::<Vec<_>>(),
        )
    };
    let mut body = String::new();
    if crate::is_read(req) && req.uri().path() == "/metrics" {
        // All workers at once, so a slow one delays the scrape by its own
        // timeout only; merged in worker order, so families keep their order.
        let fetches: Vec<_> = admins
            .iter()
            .map(|a| a.map(|a| tokio::spawn(fetch_metrics(a))))
            .collect();
        let mut texts = Vec::new();
        for (i, f) in fetches.into_iter().enumerate() {
            let Some(f) = f else { continue };
            match f.await.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(t) => texts.push(t),
                Err(e) => tracing::warn!(worker = i, error = %e, "cannot read a worker's metrics"),
            }
        }
        body = merge_metrics(&texts);
        body.push_str(&format!(
            "# HELP wasmops_workers_ready Worker processes serving.\n# TYPE wasmops_workers_ready gauge\nwasmops_workers_ready {ready}\n\
             # HELP wasmops_worker_restarts Worker processes started again after they exited.\n# TYPE wasmops_worker_restarts counter\nwasmops_worker_restarts_total {}\n",
            shared.restarts.load(Ordering::Relaxed)
        ));
    }
    crate::admin_answer(req, all_ready, || body)
}

/// A worker's `/metrics`, over its loopback admin listener.
async fn fetch_metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: worker\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .context("timed out")??;
    let text = String::from_utf8(buf).context("not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        anyhow::bail!("{}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// Prometheus text from several workers as one exposition, as if one
/// process served: each family's `# HELP`/`# TYPE` once, and each series
/// (name and labels) once, its values added up. Every family wasmops
/// exports adds up across processes: counters, histograms (buckets, sums
/// and counts), instances in use, resident memory.
pub fn merge_metrics(texts: &[String]) -> String {
    /// A family: its name, header lines, and series with their totals.
    struct Family {
        name: String,
        headers: Vec<String>,
        series: Vec<(String, f64)>,
    }
    let mut families: Vec<Family> = Vec::new();
    // Where each series is: (family, position), so a scrape of many apps
    // stays linear.
    let mut index: std::collections::HashMap<String, (usize, usize)> =
        std::collections::HashMap::new();
    let find =
        |families: &mut Vec<Family>, name: &str| match families.iter().position(|f| f.name == name)
        {
            Some(i) => i,
            None => {
                families.push(Family {
                    name: name.to_string(),
                    headers: Vec::new(),
                    series: Vec::new(),
                });
                families.len() - 1
            }
        };
    for text in texts {
        let mut current: Option<usize> = None;
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if kind == "HELP" || kind == "TYPE" {
                    let i = find(&mut families, name);
                    if !families[i].headers.iter().any(|h| h == line) {
                        families[i].headers.push(line.to_string());
                    }
                    current = Some(i);
                }
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = &series[..series.find('{').unwrap_or(series.len())];
            let i = match current {
                Some(i) if name.starts_with(families[i].name.as_str()) => i,
                _ => {
                    let i = find(&mut families, name);
                    current = Some(i);
                    i
                }
            };
            match index.get(series) {
                Some(&(fi, si)) => families[fi].series[si].1 += value,
                None => {
                    index.insert(series.to_string(), (i, families[i].series.len()));
                    families[i].series.push((series.to_string(), value));
                }
            }
        }
    }
    let mut out = String::new();
    for f in families {
        for h in &f.headers {
            out.push_str(h);
            out.push('\n');
        }
        for (series, total) in &f.series {
            out.push_str(&format!("{series} {total}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_metrics_keep_one_header_per_family_and_add_up_each_series() {
        let a = "# HELP req Requests.\n# TYPE req counter\nreq{app=\"x\"} 3\nreq{app=\"y\"} 1\n# HELP up Up.\n# TYPE up gauge\nup 1\n";
        let b = "# HELP req Requests.\n# TYPE req counter\nreq{app=\"x\"} 5\n# HELP up Up.\n# TYPE up gauge\nup 1\n# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 2\nlat_sum 0.25\nlat_count 2\n# EOF\n";
        let c = "# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 1\nlat_sum 0.5\nlat_count 1\n";
        let m = merge_metrics(&[a.into(), b.into(), c.into()]);
        assert_eq!(
            m,
            "# HELP req Requests.\n# TYPE req counter\nreq{app=\"x\"} 8\nreq{app=\"y\"} 1\n\
             # HELP up Up.\n# TYPE up gauge\nup 2\n\
             # HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 3\nlat_sum 0.75\nlat_count 3\n"
        );
    }

    #[test]
    fn workers_flag() {
        assert_eq!(parse_workers("3"), Ok(3));
        assert!(parse_workers("0").is_err());
        assert!(parse_workers("x").is_err());
        assert!(parse_workers("auto").unwrap() >= 1);
    }
}
