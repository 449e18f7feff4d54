//! The static-linkage proof: an ELF executable of the expected machine, class
//! and byte order with no `PT_INTERP` program header and no `DT_NEEDED` entry
//! (System V gABI, chapter 4 "ELF Header" and chapter 5, "Program Loading and
//! Dynamic Linking").
//!
//! Static-pie passes: musl links it as `ET_DYN` with a dynamic section for
//! self-relocation, but with no interpreter and no needed libraries. The check
//! reads program headers only, which is what the kernel and the dynamic loader
//! read, so stripping section headers cannot hide a dependency. 32-bit and
//! 64-bit files, of either byte order, are read with the same rules.

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

/// The ELF file class: the width of addresses in the file's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Elf32,
    Elf64,
}

impl Class {
    fn describe(self) -> &'static str {
        match self {
            Class::Elf32 => "32-bit",
            Class::Elf64 => "64-bit",
        }
    }
}

/// What a platform's binaries must be: the ELF header's `e_machine`, its
/// class (`EI_CLASS`) and its byte order (`EI_DATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfMachine {
    pub machine: elf::Machine,
    pub class: Class,
    pub endian: Endianness,
}

/// Why a binary cannot go into a scratch image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotStatic {
    #[error("it is not an ELF file ({0})")]
    NotElf(String),
    #[error("it is a {found} ELF file; {platform} needs a {expected} one")]
    WrongClass {
        found: &'static str,
        expected: &'static str,
        platform: String,
    },
    #[error("it is a {found} ELF file; {platform} needs a {expected} one")]
    WrongEndian {
        found: &'static str,
        expected: &'static str,
        platform: String,
    },
    #[error("it is built for {found} but the platform needs {expected}")]
    WrongMachine { found: String, expected: String },
    #[error("it is not an executable (ELF type {0})")]
    NotExecutable(String),
    #[error("it is malformed: {0}")]
    Malformed(String),
    #[error("{}", describe_dynamic(.interpreter, .needed))]
    Dynamic {
        interpreter: Option<String>,
        needed: Vec<String>,
    },
}

fn describe_dynamic(interpreter: &Option<String>, needed: &[String]) -> String {
    let mut parts = Vec::new();
    if let Some(interp) = interpreter {
        parts.push(format!("it asks for the dynamic loader {interp}"));
    }
    if !needed.is_empty() {
        parts.push(format!(
            "it needs the shared {} {}",
            if needed.len() == 1 {
                "library"
            } else {
                "libraries"
            },
            needed.join(", ")
        ));
    }
    let mut s = format!(
        "it is dynamically linked: {}; a scratch image has neither",
        parts.join(" and ")
    );
    if interpreter.is_none() {
        s.push_str(" (with no loader named, it would crash at start)");
    }
    s
}

/// Checks that `data` is a static executable for `expected` (machine, class
/// and byte order); `platform` names it in messages.
pub fn check_static(data: &[u8], expected: ElfMachine, platform: &str) -> Result<(), NotStatic> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => check::<elf::FileHeader64<Endianness>>(data, expected, platform),
        Ok(FileKind::Elf32) => check::<elf::FileHeader32<Endianness>>(data, expected, platform),
        Ok(kind) => Err(NotStatic::NotElf(format!("{kind:?}"))),
        Err(_) => Err(NotStatic::NotElf("unrecognised format".to_owned())),
    }
}

fn check<H: FileHeader<Endian = Endianness>>(
    data: &[u8],
    expected: ElfMachine,
    platform: &str,
) -> Result<(), NotStatic> {
    let malformed = |e: object::Error| NotStatic::Malformed(e.to_string());
    let header = H::parse(data).map_err(malformed)?;
    let endian = header.endian().map_err(malformed)?;
    // The machine first: a binary for another architecture usually differs
    // in class too, and its machine is what the user needs to hear.
    let found = header.e_machine(endian);
    if found != expected.machine {
        return Err(NotStatic::WrongMachine {
            found: machine_name(found),
            expected: format!("{} ({platform})", machine_name(expected.machine)),
        });
    }
    let class = if header.is_type_64() {
        Class::Elf64
    } else {
        Class::Elf32
    };
    if class != expected.class {
        return Err(NotStatic::WrongClass {
            found: class.describe(),
            expected: expected.class.describe(),
            platform: platform.to_owned(),
        });
    }
    if endian != expected.endian {
        return Err(NotStatic::WrongEndian {
            found: endian_name(endian),
            expected: endian_name(expected.endian),
            platform: platform.to_owned(),
        });
    }
    let kind = header.e_type(endian);
    if kind != elf::ET_EXEC && kind != elf::ET_DYN {
        return Err(NotStatic::NotExecutable(format!("{kind:?}")));
    }
    let segments = header.program_headers(endian, data).map_err(malformed)?;

    let mut interpreter = None;
    for seg in segments {
        if seg.p_type(endian) == elf::PT_INTERP {
            let bytes = seg
                .data(endian, data)
                .map_err(|()| NotStatic::Malformed("PT_INTERP lies outside the file".into()))?;
            let name = bytes.split(|&b| b == 0).next().unwrap_or_default();
            interpreter = Some(String::from_utf8_lossy(name).into_owned());
        }
    }

    let mut needed = Vec::new();
    for seg in segments {
        let Some(entries) = seg.dynamic(endian, data).map_err(malformed)? else {
            continue;
        };
        let mut strtab_addr = None;
        let mut offsets = Vec::new();
        for entry in entries {
            let tag = entry.d_tag(endian);
            if tag == elf::DT_NULL {
                break;
            } else if tag == elf::DT_STRTAB {
                strtab_addr = Some(entry.d_val(endian).into());
            } else if tag == elf::DT_NEEDED {
                offsets.push(entry.d_val(endian).into());
            }
        }
        if offsets.is_empty() {
            continue;
        }
        // DT_STRTAB holds a virtual address; find the file bytes the loader
        // would map there.
        let strtab = strtab_addr.and_then(|addr: u64| {
            segments.iter().find_map(|s| {
                let vaddr: u64 = s.p_vaddr(endian).into();
                let filesz: u64 = s.p_filesz(endian).into();
                let offset: u64 = s.p_offset(endian).into();
                // Checked arithmetic: a hostile header must not overflow.
                let end = vaddr.checked_add(filesz)?;
                let at = offset.checked_add(addr.checked_sub(vaddr)?)?;
                (s.p_type(endian) == elf::PT_LOAD && addr >= vaddr && addr < end)
                    .then(|| data.get(usize::try_from(at).ok()?..))
                    .flatten()
            })
        });
        for off in offsets {
            let name = strtab
                .and_then(|t| t.get(usize::try_from(off).ok()?..))
                .and_then(|t| t.split(|&b| b == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_else(|| format!("<unreadable name at offset {off}>"));
            needed.push(name);
        }
    }

    if interpreter.is_some() || !needed.is_empty() {
        return Err(NotStatic::Dynamic {
            interpreter,
            needed,
        });
    }
    Ok(())
}

fn machine_name(machine: elf::Machine) -> String {
    let name = match machine {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_386 => "i386",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_PPC => "ppc",
        elf::EM_S390 => "s390",
        elf::EM_MIPS => "mips",
        _ => return format!("ELF machine {}", machine.0),
    };
    name.to_owned()
}

fn endian_name(endian: Endianness) -> &'static str {
    match endian {
        Endianness::Little => "little-endian",
        Endianness::Big => "big-endian",
    }
}

#[cfg(test)]
pub(crate) mod tests;
