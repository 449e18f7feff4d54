//! The scratchpack command line as the tests run it: exactly what a
//! workspace's xtask binary is, built here so the tests can locate it.

fn main() -> std::process::ExitCode {
    scratchpack::cli::main()
}
