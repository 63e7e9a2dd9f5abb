//! `betanet name`, `mint`, `voucher` and `governance`: thin wrappers over
//! `betanet_trust::cli` (which does the work and formats the output).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use betanet_trust::cli as trust;
use clap::Subcommand;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `betanet name …`
#[derive(Subcommand)]
pub enum NameCmd {
    /// Show the PeerID, betanet:// id and bn1: name of an Ed25519 public key.
    Show {
        /// Ed25519 public key, 64 hex digits.
        pubkey: String,
    },
    /// Check that a betanet:// id, bn1: name or PeerID belongs to a public key.
    Verify {
        /// The id or name.
        name: String,
        /// Ed25519 public key, 64 hex digits.
        pubkey: String,
    },
    /// Sign an alias record (1.2) as one maintainer.
    AliasSign {
        /// The maintainer's secret seed, 64 hex digits.
        #[arg(long)]
        seed: String,
        /// The alias.
        #[arg(long)]
        alias: String,
        /// The node: a bn1: name or 40 hex digits of NodeID.
        #[arg(long)]
        node: String,
        /// Sequence number (strictly increasing per alias).
        #[arg(long)]
        seq: u64,
        /// Timestamp in ms [default: now].
        #[arg(long)]
        ts: Option<u64>,
    },
    /// Decode an alias record and check which maintainer signed it.
    AliasVerify {
        /// The record, hex det-CBOR.
        record: String,
        /// Maintainer public keys, hex.
        #[arg(required = true)]
        maintainers: Vec<String>,
    },
}

/// `betanet mint …`
#[derive(Subcommand)]
pub enum MintCmd {
    /// Create a FROST-Ed25519 federation (t = 3) and write its federation file (LOCAL USE: it
    /// holds every member's secret share).
    Create {
        /// Number of members (≥ 5).
        #[arg(long, default_value_t = 5)]
        members: u16,
        /// Use distributed key generation instead of a trusted dealer.
        #[arg(long)]
        dkg: bool,
        /// Where to write the federation file (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Also write the public keyset file here.
        #[arg(long)]
        keyset_out: Option<PathBuf>,
    },
    /// Threshold-sign a voucher with the listed members.
    Sign {
        /// The federation file.
        #[arg(long)]
        federation: PathBuf,
        /// Member indices, e.g. 1,3,5.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<u16>,
        /// The voucher secret, 64 hex digits [default: random].
        #[arg(long)]
        secret: Option<String>,
    },
    /// A signed mint announcement with proof of work (hex det-CBOR).
    Announce {
        /// The federation file.
        #[arg(long)]
        federation: PathBuf,
        /// Member indices, e.g. 1,2,3.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<u16>,
        /// HTX contact of the mint.
        #[arg(long)]
        contact: String,
        /// Proof-of-work bits (≥ 22).
        #[arg(long, default_value_t = 22)]
        bits: u32,
    },
}

/// `betanet voucher …`
#[derive(Subcommand)]
pub enum VoucherCmd {
    /// Verify a voucher's group signature.
    Verify {
        /// The voucher, hex (128 bytes).
        voucher: String,
        /// The keyset file.
        #[arg(long)]
        keyset: PathBuf,
    },
    /// Verify and record a voucher as spent (refused if spent before, also across runs).
    Redeem {
        /// The voucher, hex.
        voucher: String,
        /// Keyset files.
        #[arg(long, required = true)]
        keyset: Vec<PathBuf>,
        /// The spent-voucher database (redb).
        #[arg(long)]
        db: PathBuf,
        /// Value credited per voucher, in sat.
        #[arg(long, default_value_t = 1000)]
        value_sat: u64,
    },
}

/// `betanet governance …`
#[derive(Subcommand)]
pub enum GovernanceCmd {
    /// Tally a proposal from a JSON description of nodes, stakes, labels and ACKs.
    Tally {
        /// The JSON file.
        file: PathBuf,
    },
}

fn hex32(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).context("expected 64 hex digits")?;
    Ok(out)
}

/// Runs `betanet name`.
pub fn name(cmd: NameCmd) -> Result<()> {
    match cmd {
        NameCmd::Show { pubkey } => print!("{}", trust::name_show(&pubkey)?),
        NameCmd::Verify { name, pubkey } => print!("{}", trust::name_verify(&name, &pubkey)?),
        NameCmd::AliasSign {
            seed,
            alias,
            node,
            seq,
            ts,
        } => {
            print!(
                "{}",
                trust::alias_sign(&seed, &alias, &node, seq, ts.unwrap_or_else(now_ms))?
            )
        }
        NameCmd::AliasVerify {
            record,
            maintainers,
        } => {
            print!("{}", trust::alias_verify(&record, &maintainers)?)
        }
    }
    Ok(())
}

/// Runs `betanet mint`.
pub fn mint(cmd: MintCmd) -> Result<()> {
    let mut rng = rand_core::OsRng;
    match cmd {
        MintCmd::Create {
            members,
            dkg,
            out,
            keyset_out,
        } => {
            let fed = trust::mint_create(members, dkg, &mut rng)?;
            std::fs::write(&out, fed.to_json()?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            if let Some(k) = keyset_out {
                std::fs::write(&k, serde_json::to_string_pretty(&fed.keyset)?)
                    .with_context(|| format!("cannot write {}", k.display()))?;
            }
            print!("{fed}");
            println!(
                "federation file (contains secret shares; local use): {}",
                out.display()
            );
        }
        MintCmd::Sign {
            federation,
            members,
            secret,
        } => {
            let fed = trust::read_federation_file(&federation)?;
            let secret = secret.as_deref().map(hex32).transpose()?;
            print!(
                "{}",
                trust::mint_sign_voucher(&fed, &members, secret, &mut rng)?
            );
        }
        MintCmd::Announce {
            federation,
            members,
            contact,
            bits,
        } => {
            let fed = trust::read_federation_file(&federation)?;
            eprintln!("mining {bits} bits of proof of work…");
            println!(
                "{}",
                trust::mint_announce(&fed, &members, &contact, now_ms(), bits, &mut rng)?
            );
        }
    }
    Ok(())
}

/// Runs `betanet voucher`.
pub fn voucher(cmd: VoucherCmd) -> Result<()> {
    match cmd {
        VoucherCmd::Verify { voucher, keyset } => {
            let ks = trust::read_keyset_file(&keyset)?;
            print!("{}", trust::voucher_verify(&voucher, &ks)?);
        }
        VoucherCmd::Redeem {
            voucher,
            keyset,
            db,
            value_sat,
        } => {
            let ks = keyset
                .iter()
                .map(|p| trust::read_keyset_file(p))
                .collect::<Result<Vec<_>, _>>()?;
            print!(
                "{}",
                trust::voucher_redeem(&voucher, &ks, value_sat, &db, now_ms())?
            );
        }
    }
    Ok(())
}

/// Runs `betanet governance`.
pub fn governance(cmd: GovernanceCmd) -> Result<()> {
    match cmd {
        GovernanceCmd::Tally { file } => print!("{}", trust::governance_tally(&file, now_ms())?),
    }
    Ok(())
}
