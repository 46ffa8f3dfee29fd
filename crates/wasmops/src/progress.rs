//! Progress on the terminal: a spinner while something slow runs, and the
//! build of an app's components with a line (or a spinner) per component,
//! for `build`, `up`, `serve` and `test`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use wasmops_build::{BuildError, Event, Options, Outcome};

/// One component's build, as reported.
pub struct Built {
    pub id: String,
    pub result: Result<Outcome, BuildError>,
    pub elapsed: Duration,
}

/// Builds with a live display on a terminal (a spinner per component), and
/// one line per start and end otherwise.
pub fn build_with_progress(
    app: &wasmops_manifest::App,
    only: Option<&[String]>,
    options: &Options,
) -> Vec<Built> {
    let tty = std::io::stderr().is_terminal();
    let times: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());
    let multi = indicatif::MultiProgress::new();
    let bars: Mutex<Vec<(String, indicatif::ProgressBar)>> = Mutex::new(Vec::new());
    let style = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    let on_event = |e: Event<'_>| match e {
        Event::Started { id, language } => {
            if tty {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_message(format!("{id}: building ({})", language.name()));
                bar.enable_steady_tick(Duration::from_millis(100));
                bars.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((id.to_string(), bar));
            } else {
                eprintln!("wasmops: {id}: building ({})", language.name());
            }
        }
        Event::Finished {
            id,
            result,
            elapsed,
        } => {
            times
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((id.to_string(), elapsed));
            let line = match result {
                Ok(Outcome::Built(_)) => format!("{id}: built in {:.1}s", elapsed.as_secs_f64()),
                Ok(Outcome::Cached) => format!("{id}: up to date"),
                Err(_) => format!("{id}: failed after {:.1}s", elapsed.as_secs_f64()),
            };
            let bar = bars
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|b| b.0 == id)
                .map(|b| b.1.clone());
            match bar {
                Some(bar) => bar.finish_with_message(line),
                None => eprintln!("wasmops: {line}"),
            }
        }
    };
    let results = wasmops_build::build_app(app, only, options, &on_event);
    let times = times.into_inner().unwrap_or_else(|p| p.into_inner());
    results
        .into_iter()
        .map(|(id, result)| Built {
            elapsed: times
                .iter()
                .find(|t| t.0 == id)
                .map_or(Duration::ZERO, |t| t.1),
            id,
            result,
        })
        .collect()
}

/// A spinner on stderr while something slow runs (compiling at start-up),
/// on a terminal only; cleared when dropped or finished.
pub fn spinner(msg: &str) -> Option<indicatif::ProgressBar> {
    // Worker processes share the terminal: only the first shows progress
    // (it compiles; the others load from the cache).
    let other_worker = wasmops_server::workers::this_worker().is_some_and(|w| w.index > 0);
    if !std::io::stderr().is_terminal() || other_worker {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(msg.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}
