//! Reads its greeting from a file at run time, so the image needs more than the
//! binary: images.toml places the file, and the path comes from `GREETER_FILE`.

use std::process::ExitCode;

const DEFAULT_PATH: &str = "/etc/greeter/greeting.txt";

fn main() -> ExitCode {
    let path = std::env::var("GREETER_FILE").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("greeter: reading {path}: {err}");
            ExitCode::from(3)
        }
    }
}
