//! `salesforce-emulator` binary: parses arguments, binds, serves until ctrl-c.
//!
//! ```text
//! salesforce-emulator --port 8111 --seed 42 --rows Account=100000 --rows Contact=5000
//! ```
//! Prints the base URL and a ready line to stdout; logs go to stderr.

use anyhow::{Context, bail};
use clap::Parser;
use salesforce_emulator::{Config, EmulatorState, run};
use std::io::Write;
use std::sync::Arc;

/// A local Salesforce API emulator.
#[derive(Debug, Parser)]
#[command(name = "salesforce-emulator", version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8111)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Generator seed (default 42).
    #[arg(long)]
    seed: Option<u64>,
    /// Rows per object, `Object=N` (repeatable).
    #[arg(long = "rows", value_name = "OBJECT=N")]
    rows: Vec<String>,
    /// Rows for objects not given with --rows (default 100).
    #[arg(long)]
    default_rows: Option<u64>,
    /// Full configuration as JSON (fields of `Config`); the other flags override it.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Background mutations: every MS milliseconds insert, update and soft-delete rows of the
    /// mutation objects (SystemModstamp = now; deterministic from the seed). Off by default.
    #[arg(long, value_name = "MS")]
    mutation_interval_ms: Option<u64>,
    /// Row operations per object per mutation tick (default 10).
    #[arg(long, value_name = "N")]
    mutation_batch: Option<u32>,
    /// Object to mutate (repeatable; default: the objects given with --rows, else Account).
    #[arg(long = "mutation-object", value_name = "OBJECT")]
    mutation_objects: Vec<String>,
    /// Concurrent long-running request limit: when this many API requests have been running
    /// longer than --long-request-ms, further requests get 403 REQUEST_LIMIT_EXCEEDED
    /// (ConcurrentRequests). Salesforce: 25 in production and sandbox orgs, 5 in developer and
    /// trial orgs. Off by default.
    #[arg(long, value_name = "N")]
    concurrent_long_requests: Option<u32>,
    /// How long (ms) a request runs before it counts as long-running (Salesforce: 20000).
    #[arg(long, value_name = "MS")]
    long_request_ms: Option<u64>,
    /// Show encryptedstring values in clear text in query results (a user with "View Encrypted
    /// Data"); by default they are masked.
    #[arg(long)]
    view_encrypted_data: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str::<Config>(&text)
                .with_context(|| format!("parsing {}", p.display()))?
        }
        None => Config::default(),
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(n) = args.default_rows {
        config.default_rows = n;
    }
    for r in &args.rows {
        let Some((obj, n)) = r.split_once('=') else {
            bail!("--rows expects OBJECT=N, got {r:?}");
        };
        let n: u64 = n
            .parse()
            .with_context(|| format!("--rows {r:?}: N is not a number"))?;
        config.rows.insert(obj.to_string(), n);
    }
    if let Some(ms) = args.mutation_interval_ms {
        config.mutations.interval_ms = ms;
    }
    if let Some(n) = args.mutation_batch {
        config.mutations.batch = n;
    }
    if !args.mutation_objects.is_empty() {
        config.mutations.objects = args.mutation_objects.clone();
    }
    if let Some(n) = args.concurrent_long_requests {
        config.faults.concurrent_long_requests = Some(n);
    }
    if let Some(ms) = args.long_request_ms {
        config.faults.long_request_ms = Some(ms);
    }
    if args.view_encrypted_data {
        config.view_encrypted_data = true;
    }
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(EmulatorState::new(config));
    let base = format!("http://{addr}");
    if let Ok(mut b) = state.base_url.write() {
        *b = base.clone();
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{base}")?;
    writeln!(out, "salesforce-emulator ready on {base}")?;
    out.flush()?;
    drop(out);
    run(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
