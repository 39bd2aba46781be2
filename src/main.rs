//! The `walcast` command line: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use walcast::cmd::{check as preflight, run, setup};
use walcast::config;
use walcast::logging::{self, LogFormat};

/// mimalloc instead of glibc's malloc, for Rust and (through its `override` feature)
/// for librdkafka's C code too: rows are allocated on the threads that parse them and
/// freed on the one that encodes them, a pattern under which glibc spent a third of
/// walcast's CPU time in its allocator (consolidating and splitting chunks), and
/// librdkafka allocates and frees every message and header.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// PostgreSQL change-data-capture into Kafka: reads the WAL through logical replication
/// (pgoutput) and produces Debezium-compatible Avro events, one topic per table.
#[derive(Debug, Parser)]
#[command(name = "walcast", version, about, long_about = None)]
struct Cli {
    /// Log lines as human-readable text or as JSON objects (to stderr).
    #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
    log_format: Format,
    /// Log level or filter (error, warn, info, debug, trace, or e.g. "walcast=debug");
    /// defaults to RUST_LOG, then info.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a connector file, or every *.toml connector in a folder (each with its own
    /// slot); stops cleanly on SIGINT or SIGTERM.
    Run {
        /// A connector .toml file, or a folder of them.
        path: PathBuf,
        /// A connector whose replication slot is gone or invalidated (wal_status = lost)
        /// after a recorded checkpoint stops, because the changes since then are no
        /// longer in the WAL. With this flag it creates a new slot and streams from there,
        /// accepting that gap (logged with both positions). Use it once, deliberately.
        #[arg(long)]
        accept_slot_loss: bool,
    },
    /// Validate a connector file, then check the live database: reachable, wal_level,
    /// privileges, free slots and WAL senders, tables and keys, slot and publication.
    /// Prints one line per check and exits non-zero on any problem.
    Check {
        /// The connector .toml file (or a folder: every connector in it is checked).
        path: PathBuf,
    },
    /// Prepare the database for a connector: walcast's support tables (tracked
    /// migrations), the publication and grants. Safe to run again.
    Setup {
        /// The connector .toml file (or a folder of them).
        path: PathBuf,
        /// Also create the demo inventory schema (migrations/demo/).
        #[arg(long)]
        demo: bool,
        /// Connect as this user (a table owner or superuser) instead of the connector's
        /// user, and grant the connector's user what it needs. Its password is read
        /// from the WALCAST_ADMIN_PASSWORD environment variable.
        #[arg(long)]
        admin_user: Option<String>,
    },
    /// Ask a running connector for an incremental snapshot of tables (read in chunks
    /// while it keeps streaming), or pause, resume or stop one. Writes a row into
    /// walcast.signal; the connector picks it up from its stream.
    Snapshot {
        /// The connector .toml file.
        path: PathBuf,
        /// A captured table to snapshot, as schema.table (repeat for more).
        #[arg(long = "table", value_name = "SCHEMA.TABLE", required_unless_present_any = ["pause", "resume", "stop"])]
        tables: Vec<String>,
        /// Pause the running incremental snapshot after its current chunk.
        #[arg(long, conflicts_with_all = ["tables", "resume", "stop"])]
        pause: bool,
        /// Resume a paused incremental snapshot.
        #[arg(long, conflicts_with_all = ["tables", "pause", "stop"])]
        resume: bool,
        /// Stop the incremental snapshot (tables not yet read are dropped).
        #[arg(long, conflicts_with_all = ["tables", "pause", "resume"])]
        stop: bool,
    },
    /// Run walcast's development schema registry: a Confluent-Schema-Registry-compatible
    /// REST server (Avro only) for tests and the quickstart; stops on SIGINT or SIGTERM.
    Registry {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// Folder for the registry's append-only log (created if missing); ids and
        /// versions survive restarts.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print the status of a running walcast (each connector's state, positions, lag,
    /// counts, snapshot progress, last error), read from its /status endpoint. Exits 0
    /// when every connector streams or snapshots, 1 otherwise.
    Status {
        /// A connector .toml file (its [metrics] listen address is asked), or the base
        /// URL of a walcast, e.g. http://walcast-0:8723.
        target: String,
    },
    /// List the replication slots of a connector's database: plugin, the process using
    /// each, confirmed position, the WAL each keeps on the server and its wal_status.
    Slots {
        /// The connector .toml file.
        path: PathBuf,
    },
    /// Remove what a connector holds in PostgreSQL: its replication slot (so the server
    /// stops keeping WAL for it), its publication when walcast manages it, and its state
    /// row. Topics and checkpoints in Kafka are left. Refuses a slot in use.
    Teardown {
        /// The connector .toml file.
        path: PathBuf,
        /// Also end the connection using the slot (a running walcast) before dropping it.
        #[arg(long)]
        force: bool,
    },
    /// Print a topic's records as JSON lines, one per record, keys and values decoded
    /// through the schema registry (Confluent wire format, Avro). Reads every partition
    /// without a consumer group (nothing is committed); a record that cannot be decoded
    /// prints an "error" line and tailing goes on. Runs until SIGINT or SIGTERM unless
    /// --max-messages or --timeout says otherwise.
    Tail {
        /// The topic to read, e.g. demo.inventory.customers.
        topic: String,
        /// Kafka bootstrap servers [default: the connector's, else 127.0.0.1:9092].
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap_servers: Option<String>,
        /// Schema registry URL (credentials as user:password@ if needed) [default: the
        /// connector's [registry], else http://127.0.0.1:8081].
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// Start at the beginning of each partition instead of the end.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after printing this many records.
        #[arg(long, value_name = "N")]
        max_messages: Option<u64>,
        /// Stop after this long without a new record (e.g. 10s); also how long to wait
        /// for the broker [default: run until SIGINT/SIGTERM; broker wait 10s].
        #[arg(long, value_name = "DURATION", value_parser = walcast::cmd::tail::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Take the broker, the registry and their credentials from this connector file
        /// (flags win).
        #[arg(long, value_name = "FILE")]
        connector: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        Format::Human => LogFormat::Human,
        Format::Json => LogFormat::Json,
    };
    if let Err(e) = logging::init(format, cli.log_level.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command; `Ok(false)` means it ran and found problems (already printed).
async fn execute(command: Command) -> Result<bool, String> {
    match command {
        Command::Run {
            path,
            accept_slot_loss,
        } => {
            let mut connectors = config::load_path(&path).map_err(|e| e.to_string())?;
            for connector in &mut connectors {
                connector.accept_slot_loss = accept_slot_loss;
            }
            // Each connector's error is already logged (one line each) by the runner.
            let errors = run::run(connectors).await;
            Ok(errors.is_empty())
        }
        Command::Check { path } => {
            let connectors = config::load_path(&path).map_err(|e| e.to_string())?;
            let mut all_ok = true;
            for connector in &connectors {
                println!(
                    "ok      {}: configuration is valid (connector {})",
                    connector.file.display(),
                    connector.name
                );
                let mut findings = preflight::check(connector).await;
                findings.extend(preflight::check_services(connector).await);
                for finding in findings {
                    all_ok &= finding.ok;
                    println!("{finding}");
                }
            }
            Ok(all_ok)
        }
        Command::Setup {
            path,
            demo,
            admin_user,
        } => {
            let connectors = config::load_path(&path).map_err(|e| e.to_string())?;
            let options = setup::SetupOptions {
                demo,
                admin_password: admin_user
                    .as_ref()
                    .and_then(|_| std::env::var("WALCAST_ADMIN_PASSWORD").ok()),
                admin_user,
            };
            for connector in &connectors {
                let steps = setup::setup(connector, &options)
                    .await
                    .map_err(|e| format!("setup of connector {} failed: {e}", connector.name))?;
                for step in steps {
                    println!("{}: {step}", connector.name);
                }
            }
            Ok(true)
        }
        Command::Snapshot {
            path,
            tables,
            pause,
            resume,
            stop,
        } => {
            let connector = config::load_file(&path).map_err(|e| e.to_string())?;
            let signal = if pause {
                walcast::cmd::snapshot_signal::Signal::Pause
            } else if resume {
                walcast::cmd::snapshot_signal::Signal::Resume
            } else if stop {
                walcast::cmd::snapshot_signal::Signal::Stop
            } else {
                walcast::cmd::snapshot_signal::Signal::Snapshot(tables)
            };
            let id = walcast::cmd::snapshot_signal::send(&connector, &signal).await?;
            println!(
                "signal {id} written to walcast.signal; connector {} acts on it when its stream reaches it",
                connector.name
            );
            Ok(true)
        }
        Command::Status { target } => walcast::cmd::status::run(&target).await,
        Command::Slots { path } => {
            let connector = config::load_file(&path).map_err(|e| e.to_string())?;
            walcast::cmd::slots::print(&connector).await?;
            Ok(true)
        }
        Command::Teardown { path, force } => {
            let connector = config::load_file(&path).map_err(|e| e.to_string())?;
            for line in walcast::cmd::slots::teardown(&connector, force).await? {
                println!("{}: {line}", connector.name);
            }
            Ok(true)
        }
        Command::Registry { listen, data_dir } => {
            walcast::registry::serve(listen, &data_dir)
                .await
                .map_err(|e| e.to_string())?;
            Ok(true)
        }
        Command::Tail {
            topic,
            bootstrap_servers,
            registry,
            from_beginning,
            max_messages,
            timeout,
            connector,
        } => {
            walcast::cmd::tail::run(walcast::cmd::tail::TailArgs {
                topic,
                bootstrap_servers,
                registry,
                from_beginning,
                max_messages,
                timeout,
                connector,
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok(true)
        }
    }
}
