//! The seedgate command line: `run`, `check-config`, `crds`, and the tools
//! `loadgen` and `sink`. It parses arguments and hands over; everything else
//! lives in the library.
#![allow(clippy::print_stdout)] // printing is this binary's job

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use seedgate::app::{self, RunOptions};
use seedgate::config;
use seedgate::tools::{loadgen, sink};

/// One process per Gardener seed: OTLP receiver, router, durable exporter.
#[derive(Debug, Parser)]
#[command(name = "seedgate", version, about)]
struct Cli {
    /// Log filter (tracing-subscriber EnvFilter syntax); `RUST_LOG` also works.
    #[arg(long, global = true, env = "SEEDGATE_LOG", default_value = "info")]
    log_level: String,
    /// `text` or `json` log lines (on stderr; stdout belongs to the stdout exporter).
    #[arg(long, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run seedgate (the embedded default configuration without --config).
    Run {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write the bound listener addresses as JSON to this file once ready.
        #[arg(long)]
        listen_file: Option<PathBuf>,
        /// Tokio worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        worker_threads: usize,
        /// Also watch the Kubernetes API (in-cluster config or KUBECONFIG):
        /// Gardener `Cluster` resources while their CRD exists.
        #[arg(long)]
        kube: bool,
    },
    /// Check a configuration file: print the effective configuration, or
    /// every mistake as `file:line: field: problem`.
    CheckConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Print the CRDs of the pipeline kinds (LogPipeline, MetricPipeline,
    /// TracePipeline) as one multi-document YAML.
    Crds,
    /// Hand a stopped replica's queues over to the remaining replicas
    /// (scale-down): each batch is deleted here once a peer has stored it.
    /// Prints a JSON summary; exits 1 when a queue is left.
    Handoff {
        /// The leaving replica's configuration (its data directory).
        #[arg(long, short)]
        config: PathBuf,
        /// A remaining replica's OTLP/gRPC endpoint (repeat for several).
        #[arg(long = "to", required = true)]
        peers: Vec<String>,
        /// Connect and request timeout per batch.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        timeout: std::time::Duration,
        /// Most bytes per request (and per delete transaction).
        #[arg(long, default_value_t = seedgate::handoff::DEFAULT_BATCH_BYTES)]
        batch_bytes: u64,
    },
    /// Generate sequence-numbered OTLP load.
    Loadgen(loadgen::LoadgenArgs),
    /// An OTLP server that counts, injects faults and verifies.
    Sink(sink::SinkArgs),
}

fn init_logs(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn tool_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log_level, cli.log_format);
    match cli.command {
        Command::Run {
            config,
            listen_file,
            worker_threads,
            kube,
        } => {
            match seedgate::malloc::tune() {
                seedgate::malloc::Tuning::Applied => tracing::info!(
                    trim_threshold = seedgate::malloc::TRIM_THRESHOLD,
                    mmap_threshold = seedgate::malloc::MMAP_THRESHOLD,
                    "Set glibc malloc's thresholds (GLIBC_TUNABLES with glibc.malloc.* settings, or MALLOC_* variables, override them)"
                ),
                seedgate::malloc::Tuning::Operator => tracing::info!(
                    "Left glibc malloc as the environment tunes it (GLIBC_TUNABLES or MALLOC_* variables)"
                ),
                seedgate::malloc::Tuning::Unavailable => {}
            }
            let loaded = match &config {
                Some(path) => config::load_file(path),
                None => Ok(config::embedded_default()),
            };
            let cfg = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match app::run(
                cfg,
                RunOptions {
                    listen_file,
                    worker_threads,
                    config_file: config,
                    kube,
                },
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("seedgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match config::load_file(&file) {
            Ok(cfg) => match serde_saphyr::to_string(&*cfg) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: valid, but cannot print it: {e}", file.display());
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Handoff {
            config,
            peers,
            timeout,
            batch_bytes,
        } => {
            let cfg = match config::load_file(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match seedgate::handoff::run(&cfg, &peers, timeout, batch_bytes) {
                Ok(summary) => {
                    println!("{}", serde_json::to_string(&summary).unwrap_or_default());
                    if summary.left.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("seedgate handoff: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crds => match seedgate::operator::crds::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot print the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Loadgen(args) => run_tool(async move { loadgen::run(args).await.map(|_| ()) }),
        Command::Sink(args) => run_tool(sink::run(args)),
    }
}

fn run_tool(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tool_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
