//! `cargo xtask keygen [--out DIR]`: a new ECDSA P-256 signing key pair in
//! cosign's formats (`cosign.key`, encrypted with `COSIGN_PASSWORD`, and
//! `cosign.pub`), so `cosign verify --key cosign.pub` accepts what it signs.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Failure;
use crate::release::keys::{self, KeyError, PrivateKey};
use crate::shell::Shell;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Directory to write cosign.key and cosign.pub into [default: the current directory]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print no status lines
    #[arg(long, short)]
    quiet: bool,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    let shell = Shell::new(args.quiet);
    let dir = match args.out {
        Some(dir) => dir,
        None => std::env::current_dir().context("reading the current directory")?,
    };
    if !dir.is_dir() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--out {} is not a directory",
            dir.display()
        )));
    }
    let password = keys::password_from_env().map_err(|e| Failure::Usage(e.into()))?;
    let key = PrivateKey::generate();
    let written = match keys::write_key_pair(&dir, &key, &password) {
        Ok(written) => written,
        Err(e @ KeyError::Exists(_)) => return Err(Failure::Usage(e.into())),
        Err(e) => return Err(Failure::Build(e.into())),
    };
    shell.status(
        "Wrote",
        format!("private key {}", written.private_key.display()),
    );
    shell.status(
        "Wrote",
        format!("public key {}", written.public_key.display()),
    );
    Ok(())
}
