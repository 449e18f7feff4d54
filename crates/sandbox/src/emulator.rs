//! Finding the host's static user-mode emulator (qemu-user-static) for an
//! image built for another architecture.

use std::path::{Path, PathBuf};

use crate::Error;

/// The qemu name of an architecture given the way OCI (`arm64`, `amd64`) or
/// Rust (`aarch64`, `x86_64`) spells it.
fn qemu_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" | "x86_64" => "x86_64",
        "arm64" | "aarch64" => "aarch64",
        "arm" | "armv7" => "arm",
        "386" | "i386" | "i686" | "x86" => "i386",
        "riscv64" => "riscv64",
        "ppc64le" | "powerpc64le" => "ppc64le",
        "s390x" => "s390x",
        _ => return None,
    })
}

/// The emulator to run programs for `arch` with: `None` when the host runs
/// them natively, else the path of `qemu-<arch>-static`.
pub fn emulator_for(arch: &str) -> Result<Option<PathBuf>, Error> {
    emulator_in(arch, std::env::consts::ARCH, Path::new("/usr/bin"))
}

/// Like [`emulator_for`], looking for `qemu-<arch>-static` in `dir`.
pub fn emulator_in_dir(arch: &str, dir: &Path) -> Result<Option<PathBuf>, Error> {
    emulator_in(arch, std::env::consts::ARCH, dir)
}

fn emulator_in(arch: &str, host: &str, dir: &Path) -> Result<Option<PathBuf>, Error> {
    let wanted = qemu_arch(arch).ok_or_else(|| Error::UnknownArch(arch.to_string()))?;
    let host = qemu_arch(host).unwrap_or(host);
    // An x86_64 kernel could run i386 programs itself, but their system
    // calls would reach it through the i386 entry, which the seccomp filter
    // (written for the host's calls) refuses; and i386 musl makes every
    // socket call through socketcall(2), whose arguments sit in memory where
    // no filter can read the socket family. Under qemu-i386 they become the
    // host's own calls, which the filter judges as it judges a native
    // program's.
    if wanted == host {
        return Ok(None);
    }
    let path = dir.join(format!("qemu-{wanted}-static"));
    if path.is_file() {
        Ok(Some(path))
    } else {
        Err(Error::EmulatorMissing {
            arch: arch.to_string(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_architecture_needs_no_emulator() {
        let dir = Path::new("/nonexistent");
        assert_eq!(emulator_in("amd64", "x86_64", dir).unwrap(), None);
        assert_eq!(emulator_in("arm64", "aarch64", dir).unwrap(), None);
    }

    #[test]
    fn a_foreign_architecture_names_the_package_when_missing() {
        let err = emulator_in("arm64", "x86_64", Path::new("/nonexistent")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("qemu-user-static"), "{msg}");
        assert!(msg.contains("/nonexistent/qemu-aarch64-static"), "{msg}");
    }

    #[test]
    fn a_foreign_architecture_finds_the_emulator() {
        let dir = std::env::temp_dir().join(format!("emulator-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("qemu-aarch64-static"), b"").unwrap();
        let found = emulator_in("arm64", "x86_64", &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.unwrap(), Some(dir.join("qemu-aarch64-static")));
    }

    #[test]
    fn every_platform_architecture_has_its_qemu() {
        // The OCI architecture names scratchpack writes, and the qemu each
        // needs on an x86_64 host (386 too: see `emulator_in`).
        let dir = std::env::temp_dir().join(format!("emulator-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wanted = [
            ("arm64", "qemu-aarch64-static"),
            ("arm", "qemu-arm-static"),
            ("386", "qemu-i386-static"),
            ("riscv64", "qemu-riscv64-static"),
            ("ppc64le", "qemu-ppc64le-static"),
        ];
        for (_, qemu) in wanted {
            std::fs::write(dir.join(qemu), b"").unwrap();
        }
        let found: Vec<_> = wanted
            .iter()
            .map(|(arch, _)| emulator_in(arch, "x86_64", &dir))
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        for ((arch, qemu), found) in wanted.iter().zip(found) {
            assert_eq!(found.unwrap(), Some(dir.join(qemu)), "{arch}");
        }
        // And from an arm64 host, amd64 and 386 need their own.
        let err = emulator_in("386", "aarch64", Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("qemu-i386-static"), "{err}");
    }

    #[test]
    fn unknown_architectures_are_errors() {
        assert!(matches!(
            emulator_in("vax", "x86_64", Path::new("/usr/bin")),
            Err(Error::UnknownArch(_))
        ));
    }
}
