//! The local container runtimes images are loaded into, podman and docker,
//! found on `PATH`, and the two things asked of them: which image a name
//! stands for in the runtime's store (`image inspect`), and loading an
//! archive (`load`, reading it from a pipe, so no copy of it is written to
//! disk on the way).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::Env;

/// A runtime scratchpack can load images into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Podman,
    Docker,
}

impl Kind {
    pub fn program(self) -> &'static str {
        match self {
            Kind::Podman => "podman",
            Kind::Docker => "docker",
        }
    }
}

/// A runtime found on `PATH`.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub kind: Kind,
    program: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("running `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

impl Runtime {
    /// `kind`'s program in a directory of `PATH`, the first one that has it.
    pub fn find(env: &Env, kind: Kind) -> Option<Runtime> {
        env.on_path(kind.program())
            .map(|program| Runtime { kind, program })
    }

    fn command(&self, args: &[&str]) -> (Command, String) {
        let mut cmd = Command::new(&self.program);
        cmd.args(args);
        (cmd, format!("{} {}", self.kind.program(), args.join(" ")))
    }

    /// The ID of the image `name` stands for in the runtime's store
    /// (`sha256:` and hex, as the runtime writes it), or `None` when no
    /// image has that name.
    pub fn image_id(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        let (mut cmd, command) = self.command(&["image", "inspect", "--format", "{{.Id}}", name]);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                command: command.clone(),
                source,
            })?;
        if out.status.success() {
            let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            return Ok(Some(if id.starts_with("sha256:") {
                id
            } else {
                format!("sha256:{id}")
            }));
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        // Each runtime's words for a name it does not have; anything else
        // (no daemon, no permission) is a failure to report.
        let lower = stderr.to_lowercase();
        if lower.contains("no such image") || lower.contains("image not known") {
            return Ok(None);
        }
        Err(RuntimeError::Failed {
            command,
            status: out.status.to_string(),
            stderr,
        })
    }

    /// Loads the docker archive `archive` (which is also an OCI layout),
    /// written to `load`'s standard input.
    pub fn load(&self, archive: &[u8]) -> Result<(), RuntimeError> {
        let (mut cmd, command) = self.command(&["load"]);
        let spawn = |source| RuntimeError::Spawn {
            command: command.clone(),
            source,
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Written on a thread of its own, so a runtime that fills its stderr
        // before reading all of stdin cannot stall both sides.
        let written = std::thread::scope(|s| {
            let writer = s.spawn(move || stdin.write_all(archive));
            let out = child.wait_with_output();
            (writer.join(), out)
        });
        let (written, out) = written;
        let out = out.map_err(spawn)?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if !out.status.success() {
            return Err(RuntimeError::Failed {
                command,
                status: out.status.to_string(),
                stderr,
            });
        }
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(spawn(source)),
            Err(_) => Err(spawn(std::io::Error::other("writing the archive panicked"))),
        }
    }
}

/// The program names, for messages.
pub fn names(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.program())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn runtimes_are_found_on_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let env = |path: &OsStr| Env::from_vars([("PATH", path)]);
        let empty = env(dir.path().as_os_str());
        assert!(Runtime::find(&empty, Kind::Podman).is_none());
        let podman = dir.path().join("podman");
        std::fs::write(&podman, "#!/bin/sh\n").unwrap();
        assert!(
            Runtime::find(&empty, Kind::Podman).is_none(),
            "not executable"
        );
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = Runtime::find(&empty, Kind::Podman).unwrap();
        assert_eq!(found.program, podman);
        assert!(Runtime::find(&empty, Kind::Docker).is_none());
        assert!(Runtime::find(&Env::default(), Kind::Podman).is_none());
        assert_eq!(names(&[Kind::Podman, Kind::Docker]), "podman or docker");
    }
}
