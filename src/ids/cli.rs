//! `phalanx id decode ID` and `phalanx id bench`: the generator from the command line, with the
//! layout of the node configuration (`--config`, `PHALANX_*`, defaults), so a decode matches
//! what that node issues.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::config::NodeConfig;
use crate::ids::high_water::FileHighWaterMark;
use crate::ids::{Generator, SystemClock};

#[derive(Subcommand)]
pub enum IdCommand {
    /// Print the timestamp, datacenter, worker and sequence of an ID (as JSON).
    Decode(DecodeArgs),
    /// Issue IDs as fast as one node can, from T threads sharing one generator, and print
    /// IDs per second next to the layout's limit.
    Bench(BenchArgs),
}

#[derive(Args)]
pub struct DecodeArgs {
    /// The ID.
    pub id: String,
    /// Node configuration whose layout to use (default: the built-in layout).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Threads sharing the generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How long to run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Node configuration whose layout and worker to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// What `phalanx id bench` measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub threads: usize,
    pub seconds: f64,
    pub ids: u64,
    pub ids_per_second: f64,
    /// The layout's limit for one worker.
    pub limit_per_second: u64,
    pub lease_writes: u64,
    /// Share of the bench threads' time spent runnable but waiting for a core (other
    /// processes had it), from Linux's per-thread schedstat; `None` where unavailable. On a
    /// shared machine this, not the generator, explains most of a shortfall from the limit.
    pub waiting_for_a_core: Option<f64>,
}

/// Why a `phalanx id` command failed.
#[derive(Debug, thiserror::Error)]
pub enum IdCliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Generator(#[from] crate::ids::IdError),
    #[error("{0:?} is not a Snowflake ID (a non-negative 64-bit integer)")]
    NotAnId(String),
    #[error("--threads must be at least 1 and --seconds positive")]
    BadArguments,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("a bench thread failed: {0}")]
    Thread(String),
}

pub fn run(command: IdCommand) -> Result<(), IdCliError> {
    match command {
        IdCommand::Decode(args) => {
            let config = load_config(args.config)?;
            let layout = config.id_generator_settings()?.layout;
            let decoded = args
                .id
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|id| layout.decode_json(id))
                .ok_or_else(|| IdCliError::NotAnId(args.id.clone()))?;
            println!("{decoded:#}");
            Ok(())
        }
        IdCommand::Bench(args) => {
            let json = args.json;
            let report = bench(args)?;
            if json {
                println!("{}", serde_json::json!(report));
            } else {
                println!(
                    "{} thread(s), {:.2} s: {} IDs, {:.0} IDs/s = {:.2}% of the layout's limit of {} IDs/s per worker ({} lease writes; waiting for a core {})",
                    report.threads,
                    report.seconds,
                    report.ids,
                    report.ids_per_second,
                    100.0 * report.ids_per_second / report.limit_per_second as f64,
                    report.limit_per_second,
                    report.lease_writes,
                    report
                        .waiting_for_a_core
                        .map_or("unknown".to_string(), |w| format!(
                            "{:.1}% of the time",
                            100.0 * w
                        )),
                );
            }
            Ok(())
        }
    }
}

fn load_config(file: Option<PathBuf>) -> Result<NodeConfig, IdCliError> {
    Ok(NodeConfig::load(file.as_deref(), serde_json::json!({}))?)
}

/// Runs the benchmark: `threads` threads share one generator (one node, one worker), with its
/// lease in a temporary directory (so lease writes are real fsyncs), for `seconds`. Each thread
/// checks that the IDs it receives strictly increase.
pub fn bench(args: BenchArgs) -> Result<BenchReport, IdCliError> {
    if args.threads == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
        return Err(IdCliError::BadArguments);
    }
    let settings = load_config(args.config)?.id_generator_settings()?;
    let dir = std::env::temp_dir().join(format!("phalanx-id-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let generator = Generator::new(settings, SystemClock, FileHighWaterMark::new(&dir))
        .map(Arc::new)
        .inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
    let duration = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let generator = generator.clone();
            std::thread::spawn(move || -> Result<(u64, Option<SchedStat>), String> {
                let before = SchedStat::of_this_thread();
                let mut count = 0u64;
                let mut last = 0u64;
                while Instant::now() < deadline {
                    for _ in 0..1024 {
                        let id = generator.next_id().map_err(|e| e.to_string())?;
                        if id <= last {
                            return Err(format!("ID {id} after {last}"));
                        }
                        last = id;
                    }
                    count += 1024;
                }
                let spent = before
                    .zip(SchedStat::of_this_thread())
                    .map(|(b, a)| SchedStat {
                        running_ns: a.running_ns.saturating_sub(b.running_ns),
                        waiting_ns: a.waiting_ns.saturating_sub(b.waiting_ns),
                    });
                Ok((count, spent))
            })
        })
        .collect();
    let mut ids = 0;
    let mut failure = None;
    let mut sched = Some(SchedStat::default());
    for worker in workers {
        match worker.join() {
            Ok(Ok((count, spent))) => {
                ids += count;
                sched = sched.zip(spent).map(|(total, s)| SchedStat {
                    running_ns: total.running_ns + s.running_ns,
                    waiting_ns: total.waiting_ns + s.waiting_ns,
                });
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("panicked".into()),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(e) = failure {
        return Err(IdCliError::Thread(e));
    }
    Ok(BenchReport {
        threads: args.threads,
        seconds,
        ids,
        ids_per_second: ids as f64 / seconds,
        limit_per_second: settings.layout.ids_per_second_limit(),
        lease_writes: generator.stats().lease_writes,
        waiting_for_a_core: sched
            .filter(|s| s.running_ns + s.waiting_ns > 0)
            .map(|s| s.waiting_ns as f64 / (s.running_ns + s.waiting_ns) as f64),
    })
}

/// A thread's time on a core and runnable-but-waiting, from `/proc/thread-self/schedstat`.
#[derive(Debug, Clone, Copy, Default)]
struct SchedStat {
    running_ns: u64,
    waiting_ns: u64,
}

impl SchedStat {
    fn of_this_thread() -> Option<SchedStat> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        Some(SchedStat {
            running_ns: fields.next()??,
            waiting_ns: fields.next()??,
        })
    }
}
