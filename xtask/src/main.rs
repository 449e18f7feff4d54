//! This workspace's xtask: every command and flag belongs to scratchpack's CLI.

fn main() -> std::process::ExitCode {
    scratchpack::cli::main()
}
