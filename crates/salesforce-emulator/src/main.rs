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
