//! `betanet`: one binary for every Betanet role.
//!
//! This is the only crate that uses `anyhow`: it turns library errors into messages for
//! people. Subcommands: `demo`, `keygen`, `id`, `echo-server`, `stream`, `serve`, `gateway`,
//! `proxy`, `ticket`, `ticket-keygen`, `mixnode`, `name`, `mint`, `voucher`, `governance`.

mod demo;
mod demo_hidden;
mod demo_mix;
mod hidden_site;
mod keyfile;
mod mixnode_cmd;
mod proxy_cmd;
mod serve;
mod trust_cmds;

use std::path::PathBuf;

use anyhow::{Context, Result};
use betanet_crypto::identity::{NodeId, PeerId, ServiceId};
use betanet_crypto::sign::SigningKey;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "betanet",
    version,
    about = "Betanet node: censorship-resistant transport, mixnet and apps"
)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `betanet_net=debug`); `RUST_LOG` wins.
    #[arg(long, global = true, env = "BETANET_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The multi-threaded tokio runtime for long-running roles.
fn runtime() -> Result<tokio::runtime::Runtime> {
    runtime_with_workers(0)
}

/// A runtime with `workers` threads: 0 = one per core, 1 = a single-threaded event loop.
fn runtime_with_workers(workers: usize) -> Result<tokio::runtime::Runtime> {
    let mut b = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if workers > 1 {
        b.worker_threads(workers);
    }
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a complete local Betanet on loopback (site server, gateway, mixnodes) and print
    /// the dashboard URL with an access ticket.
    Demo(demo::DemoArgs),
    /// Create a node key (Ed25519), written with mode 0600.
    Keygen {
        /// Where to write the key [default: <data dir>/node.key].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing key (changes the node's identity).
        #[arg(long)]
        force: bool,
    },
    /// Show the identities derived from a node key.
    Id {
        /// The key file [default: <data dir>/node.key].
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Run a site server: the app framework behind an HTX listener (or only as a mixnet
    /// hidden service with `--hidden-service --mix-seed ADDR`).
    Serve(serve::ServeArgs),
    /// Run the client proxy: local SOCKS5 + HTTP proxy to configured Betanet sites (no
    /// clearnet exit).
    Proxy(proxy_cmd::ProxyArgs),
    /// Run an HTX echo server (prints its PeerID and public key; key kept in the data dir).
    EchoServer {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: String,
        /// Carriage: tcp12, tls (TCP), quic (UDP), auto (tls on TCP and quic on UDP, same
        /// port) or tcp11.
        #[arg(long, default_value = "tcp12")]
        transport: betanet_net::Transport,
        /// Data directory (node key, TLS certificate, ticket key).
        #[arg(long, env = "BETANET_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Host name for a generated TLS certificate.
        #[arg(long, default_value = "localhost")]
        tls_hostname: String,
    },
    /// Send data over an HTX stream to an echo server and check the echo (`-` reads stdin).
    Stream {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// The server's Ed25519 public key (64 hex digits, printed by echo-server).
        server_pub_hex: String,
        /// The data to send, or `-` for stdin (large data streams through).
        data: String,
        /// Carriage: tcp12, tls, quic, auto (QUIC, then TLS after a random 200–1200 ms if
        /// QUIC fails) or tcp11.
        #[arg(long, default_value = "tcp12")]
        transport: betanet_net::Transport,
        /// TLS: SHA-256 pin of the server certificate (hex, printed by echo-server).
        #[arg(long)]
        cert_pin: Option<String>,
        /// TLS: the site's ticket key `ticketPub ‖ keyID` (80 hex digits, printed by echo-server).
        #[arg(long)]
        ticket: Option<String>,
        /// TLS: server name (SNI); defaults to the host.
        #[arg(long)]
        server_name: Option<String>,
        /// Overall time limit in seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        /// Print the connection's counters at the end (bytes, frames, rekeys, RTT).
        #[arg(long)]
        stats: bool,
    },
    /// Run the HTTP(S) front: decoy for everyone, ticket/voucher admission, forwarding to the
    /// site server over HTX.
    Gateway {
        /// The config file (see config/gateway.example.toml).
        #[arg(long, env = "BETANET_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Event loops: each a single-threaded runtime on its own thread with its own
        /// SO_REUSEPORT listener and HTX pool (refused connections are relayed to the decoy on
        /// one extra thread). 0 = one per core; see docs/BENCHMARKS.md.
        #[arg(long, env = "BETANET_GATEWAY_WORKERS", default_value_t = 0)]
        workers: usize,
    },
    /// Print ready cookie/query/body access-ticket examples for a site.
    Ticket {
        /// The site's ticket public key (X25519, 64 hex digits).
        ticket_pub_hex: String,
        /// The site's ticket key id (16 hex digits).
        ticket_key_id_hex: String,
        /// The site's name or base URL (e.g. https://example.org).
        site_name: String,
    },
    /// Create a site's ticket key pair and key id (the [ticket] table of the gateway config).
    TicketKeygen,
    /// Run an L4 mixnode (layered-packet relay) from a TOML config.
    Mixnode(mixnode_cmd::MixnodeArgs),
    /// Self-certifying ids, bn1: names and alias records.
    #[command(subcommand)]
    Name(trust_cmds::NameCmd),
    /// Threshold (FROST) mints: federations, voucher signing, announcements.
    #[command(subcommand)]
    Mint(trust_cmds::MintCmd),
    /// Verify and redeem vouchers.
    #[command(subcommand)]
    Voucher(trust_cmds::VoucherCmd),
    /// Governance weights and proposal tallies.
    #[command(subcommand)]
    Governance(trust_cmds::GovernanceCmd),
}

fn print_id(key: &SigningKey) {
    let vk = key.verifying_key();
    println!("peer_id     {}", PeerId::from_ed25519(&vk));
    println!("url         {}", ServiceId::from_ed25519(&vk).to_url());
    println!("name        {}", NodeId::from_ed25519(&vk).name());
    println!("ed25519     {}", hex::encode(vk.to_bytes()));
    println!("x25519      {}", hex::encode(vk.to_x25519().0));
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    // The demo prints its own summary; keep library logs to warnings unless asked.
    let quiet_demo = matches!(cli.cmd, Cmd::Demo(_)) && cli.log_level == "info";
    init_logging(if quiet_demo { "warn" } else { &cli.log_level });
    match cli.cmd {
        Cmd::Demo(args) => runtime()?.block_on(demo::run(args)),
        Cmd::Keygen { out, force } => {
            let path = out.unwrap_or_else(keyfile::default_key_path);
            let key = SigningKey::generate(&mut rand_core::OsRng);
            keyfile::write_key(&path, &key, force)?;
            println!("wrote       {}", path.display());
            print_id(&key);
            Ok(())
        }
        Cmd::Id { key } => {
            let path = key.unwrap_or_else(keyfile::default_key_path);
            print_id(&keyfile::read_key(&path)?);
            Ok(())
        }
        Cmd::Serve(args) => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(keyfile::default_data_dir);
            runtime()?.block_on(serve::run(args, &dir))
        }
        Cmd::Proxy(args) => runtime()?.block_on(proxy_cmd::run(args)),
        Cmd::EchoServer {
            listen,
            transport,
            data_dir,
            tls_hostname,
        } => {
            let opts = betanet_net::cli::EchoServerOptions {
                listen,
                transport,
                data_dir: data_dir.unwrap_or_else(keyfile::default_data_dir),
                tls_hostname,
                identity: None,
            };
            runtime()?.block_on(async {
                betanet_net::cli::echo_server(opts, |info| println!("{info}"))
                    .await
                    .context("echo server stopped")
            })
        }
        Cmd::Stream {
            host,
            port,
            server_pub_hex,
            data,
            transport,
            cert_pin,
            ticket,
            server_name,
            timeout_secs,
            stats,
        } => {
            let opts = betanet_net::cli::StreamOptions {
                host,
                port,
                server_pub_hex,
                transport,
                cert_pin_hex: cert_pin,
                ticket_hex: ticket,
                server_name,
                timeout: std::time::Duration::from_secs(timeout_secs),
            };
            let rt = runtime()?;
            let report = if data == "-" {
                rt.block_on(betanet_net::cli::stream(
                    opts,
                    tokio::io::stdin(),
                    tokio::io::stdout(),
                ))?
            } else {
                let input = std::io::Cursor::new(data.into_bytes());
                rt.block_on(betanet_net::cli::stream(opts, input, tokio::io::stdout()))?
            };
            eprintln!(
                "\npeer {}  sent {} B, echoed {} B in {:.1} ms (handshake {:.1} ms{}), {} key updates",
                report.peer_id,
                report.sent,
                report.received,
                report.elapsed.as_secs_f64() * 1e3,
                report.handshake.as_secs_f64() * 1e3,
                if report.post_quantum {
                    ", ML-KEM-768 hybrid"
                } else {
                    ", classic"
                },
                report.rekeys
            );
            if stats {
                eprintln!("{}", report.stats_line());
            }
            if !report.echo_ok() {
                anyhow::bail!("the echo differs from what was sent (SHA-256 mismatch)");
            }
            Ok(())
        }
        Cmd::Gateway { config, workers } => {
            let cfg = betanet_gateway::GatewayConfig::load(&config)
                .with_context(|| format!("gateway config {}", config.display()))?;
            let loops = if workers == 0 {
                std::thread::available_parallelism().map_or(1, usize::from)
            } else {
                workers
            };
            let gw = betanet_gateway::PerCoreGateway::start(cfg, loops)
                .context("starting the gateway")?;
            println!(
                "gateway     listening on {} ({loops} event loop{}, Ctrl-C to stop)",
                gw.local_addr(),
                if loops == 1 { "" } else { "s" }
            );
            let stopped = runtime_with_workers(1)?.block_on(tokio::signal::ctrl_c());
            gw.shutdown();
            stopped.context("waiting for Ctrl-C")
        }
        Cmd::Ticket {
            ticket_pub_hex,
            ticket_key_id_hex,
            site_name,
        } => {
            let out =
                betanet_gateway::ticket_examples(&ticket_pub_hex, &ticket_key_id_hex, &site_name)?;
            print!("{out}");
            Ok(())
        }
        Cmd::TicketKeygen => {
            let (secret, public, key_id) = betanet_gateway::new_site_ticket_key()?;
            println!("# gateway config (keep secret):");
            println!(
                "[ticket]\nsecret_hex = \"{}\"\nkey_id_hex = \"{key_id}\"",
                secret.as_str()
            );
            println!();
            println!("# publish to clients:");
            println!("ticket_pub  {public}\nkey_id      {key_id}");
            println!("# examples: betanet ticket {public} {key_id} <site>");
            Ok(())
        }
        Cmd::Mixnode(args) => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(keyfile::default_data_dir);
            runtime()?.block_on(mixnode_cmd::run(args, &dir))
        }
        Cmd::Name(c) => trust_cmds::name(c),
        Cmd::Mint(c) => trust_cmds::mint(c),
        Cmd::Voucher(c) => trust_cmds::voucher(c),
        Cmd::Governance(c) => trust_cmds::governance(c),
    }
}
