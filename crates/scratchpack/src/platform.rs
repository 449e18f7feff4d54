//! The platforms scratchpack builds for: their OCI names (image-spec
//! `platform` object), default Rust target triples, and ELF machines.

use std::fmt;

/// A platform an image can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    LinuxAmd64,
    LinuxArm64,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::LinuxAmd64, Platform::LinuxArm64];

    /// Parses the OCI form, `os/architecture`.
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.to_string() == s)
    }

    pub fn os(self) -> &'static str {
        "linux"
    }

    /// The architecture as the image spec and Go's GOARCH spell it.
    pub fn architecture(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "amd64",
            Platform::LinuxArm64 => "arm64",
        }
    }

    /// The Rust target a platform builds with unless images.toml overrides it:
    /// musl, whose targets link statically by default.
    pub fn default_triple(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "x86_64-unknown-linux-musl",
            Platform::LinuxArm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The ELF `e_machine` a binary for this platform must carry.
    pub fn elf_machine(self) -> object::elf::Machine {
        match self {
            Platform::LinuxAmd64 => object::elf::EM_X86_64,
            Platform::LinuxArm64 => object::elf::EM_AARCH64,
        }
    }

    /// The machine name as `uname -m` and qemu spell it.
    pub fn machine_name(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "x86_64",
            Platform::LinuxArm64 => "aarch64",
        }
    }

    /// The platform of the machine running scratchpack, when it is one.
    pub fn host() -> Option<Platform> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Platform::LinuxAmd64),
            "aarch64" => Some(Platform::LinuxArm64),
            _ => None,
        }
    }

    /// The list of supported names, for error messages.
    pub fn supported_list() -> String {
        Platform::ALL
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os(), self.architecture())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(&p.to_string()), Some(p));
        }
        assert_eq!(Platform::parse("linux/s390x"), None);
        assert_eq!(Platform::parse("amd64"), None);
    }
}
