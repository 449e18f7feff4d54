//! The platforms scratchpack builds for: their OCI names (image-spec
//! `platform` object: `os`, `architecture`, `variant`), default Rust target
//! triples, and the ELF identity (machine, class, byte order) their binaries
//! must carry.

use std::fmt;

use crate::elf::{Class, ElfMachine};

/// A platform an image can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    LinuxAmd64,
    LinuxArm64,
    LinuxArmV7,
    Linux386,
    LinuxRiscv64,
    LinuxPpc64le,
}

impl Platform {
    pub const ALL: [Platform; 6] = [
        Platform::LinuxAmd64,
        Platform::LinuxArm64,
        Platform::LinuxArmV7,
        Platform::Linux386,
        Platform::LinuxRiscv64,
        Platform::LinuxPpc64le,
    ];

    /// Parses the OCI form, `os/architecture[/variant]`.
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
            Platform::LinuxArmV7 => "arm",
            Platform::Linux386 => "386",
            Platform::LinuxRiscv64 => "riscv64",
            Platform::LinuxPpc64le => "ppc64le",
        }
    }

    /// The CPU variant of the image spec's platform object, for the
    /// architectures that have several (`arm` is v6, v7 or v8). Runtimes
    /// pick a manifest of an index by architecture and variant, so an
    /// `arm` image must carry it, in the index's platform and the config.
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Platform::LinuxArmV7 => Some("v7"),
            _ => None,
        }
    }

    /// The Rust target a platform builds with unless images.toml overrides it:
    /// musl, whose targets link statically by default.
    pub fn default_triple(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "x86_64-unknown-linux-musl",
            Platform::LinuxArm64 => "aarch64-unknown-linux-musl",
            // Hard-float EABI, as every armv7 Linux distribution uses.
            Platform::LinuxArmV7 => "armv7-unknown-linux-musleabihf",
            Platform::Linux386 => "i686-unknown-linux-musl",
            Platform::LinuxRiscv64 => "riscv64gc-unknown-linux-musl",
            Platform::LinuxPpc64le => "powerpc64le-unknown-linux-musl",
        }
    }

    /// What a binary for this platform must be: its ELF `e_machine`, class
    /// and byte order. The machine alone does not tell a platform apart:
    /// ppc64 and ppc64le share `EM_PPC64` and differ in byte order.
    pub fn elf_machine(self) -> ElfMachine {
        use crate::elf;
        let (machine, class) = match self {
            Platform::LinuxAmd64 => (elf::EM_X86_64, Class::Elf64),
            Platform::LinuxArm64 => (elf::EM_AARCH64, Class::Elf64),
            Platform::LinuxArmV7 => (elf::EM_ARM, Class::Elf32),
            Platform::Linux386 => (elf::EM_386, Class::Elf32),
            Platform::LinuxRiscv64 => (elf::EM_RISCV, Class::Elf64),
            Platform::LinuxPpc64le => (elf::EM_PPC64, Class::Elf64),
        };
        // Every supported platform is little-endian; the proof still reads
        // the byte order so a big-endian binary is named as such.
        ElfMachine {
            machine,
            class,
            endian: crate::elf::Endian::Little,
        }
    }

    /// The machine name as `uname -m` spells it.
    pub fn machine_name(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "x86_64",
            Platform::LinuxArm64 => "aarch64",
            Platform::LinuxArmV7 => "armv7l",
            Platform::Linux386 => "i686",
            Platform::LinuxRiscv64 => "riscv64",
            Platform::LinuxPpc64le => "ppc64le",
        }
    }

    /// The platform of the machine running scratchpack, when it is one.
    pub fn host() -> Option<Platform> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Platform::LinuxAmd64),
            "aarch64" => Some(Platform::LinuxArm64),
            "arm" => Some(Platform::LinuxArmV7),
            "x86" => Some(Platform::Linux386),
            "riscv64" => Some(Platform::LinuxRiscv64),
            "powerpc64" if cfg!(target_endian = "little") => Some(Platform::LinuxPpc64le),
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
        write!(f, "{}/{}", self.os(), self.architecture())?;
        if let Some(variant) = self.variant() {
            write!(f, "/{variant}")?;
        }
        Ok(())
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
        // The variant is part of the name: bare `arm` is v6, v7 or v8.
        assert_eq!(Platform::parse("linux/arm"), None);
        assert_eq!(Platform::parse("linux/arm/v7"), Some(Platform::LinuxArmV7));
        assert_eq!(Platform::parse("linux/386"), Some(Platform::Linux386));
    }

    #[test]
    fn only_arm_has_a_variant() {
        for p in Platform::ALL {
            assert_eq!(p.variant().is_some(), p == Platform::LinuxArmV7, "{p}");
        }
    }

    #[test]
    fn triples_name_the_platforms_architecture() {
        // The triple's first field is what rustc and the linker target; a
        // table slip here would build every image for the wrong machine.
        let arch = |p: Platform| p.default_triple().split('-').next().unwrap();
        assert_eq!(arch(Platform::LinuxArmV7), "armv7");
        assert_eq!(arch(Platform::Linux386), "i686");
        assert_eq!(arch(Platform::LinuxRiscv64), "riscv64gc");
        assert_eq!(arch(Platform::LinuxPpc64le), "powerpc64le");
        for p in Platform::ALL {
            assert!(p.default_triple().contains("-linux-musl"), "{p}");
        }
    }

    #[test]
    fn thirty_two_bit_platforms_want_32_bit_elf() {
        for p in Platform::ALL {
            let want_32 = matches!(p, Platform::LinuxArmV7 | Platform::Linux386);
            assert_eq!(p.elf_machine().class == Class::Elf32, want_32, "{p}");
        }
    }
}
