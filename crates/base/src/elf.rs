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
//!
//! The files are untrusted: every offset and size is checked against the
//! file before it is read, so a truncated or hostile header is an error
//! naming what is wrong, never a panic or an unbounded amount of work.

/// An ELF `e_machine` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine(pub u16);

pub const EM_386: Machine = Machine(3);
pub const EM_MIPS: Machine = Machine(8);
pub const EM_PPC: Machine = Machine(20);
pub const EM_PPC64: Machine = Machine(21);
pub const EM_S390: Machine = Machine(22);
pub const EM_ARM: Machine = Machine(40);
pub const EM_X86_64: Machine = Machine(62);
pub const EM_AARCH64: Machine = Machine(183);
pub const EM_RISCV: Machine = Machine(243);

/// `e_type`: relocatable object, executable, shared object (or PIE).
pub const ET_REL: u16 = 1;
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;

/// Program header types the proof reads.
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;

/// Dynamic section tags the proof reads.
pub const DT_NULL: u64 = 0;
pub const DT_NEEDED: u64 = 1;
pub const DT_STRTAB: u64 = 5;

/// Section header values the section lookup reads.
const SHT_NOBITS: u32 = 8;
const SHN_XINDEX: u16 = 0xffff;

/// The most program header bytes Linux's ELF loader reads (binfmt_elf
/// refuses a larger table), which also bounds the work a hostile header
/// can ask for.
const MAX_PROGRAM_HEADERS: u64 = 64 * 1024;

/// The byte order of an ELF file (`EI_DATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

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
    pub machine: Machine,
    pub class: Class,
    pub endian: Endian,
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

/// The largest ELF header: what [`check_header`] needs of a file.
pub const HEADER_BYTES: usize = 64;

/// Checks the ELF header alone, from a file's first [`HEADER_BYTES`]: an
/// ELF executable for `expected` (machine, class and byte order). A reader
/// of an untrusted file asks this before reading the rest of it;
/// [`check_static`] starts with it.
pub fn check_header(data: &[u8], expected: ElfMachine, platform: &str) -> Result<(), NotStatic> {
    checked_header(data, expected, platform).map(drop)
}

fn checked_header<'a>(
    data: &'a [u8],
    expected: ElfMachine,
    platform: &str,
) -> Result<Header<'a>, NotStatic> {
    let header = Header::parse(data)?;
    let file = header.file;
    // The machine first: a binary for another architecture usually differs
    // in class too, and its machine is what the user needs to hear.
    if header.machine != expected.machine {
        return Err(NotStatic::WrongMachine {
            found: machine_name(header.machine),
            expected: format!("{} ({platform})", machine_name(expected.machine)),
        });
    }
    if file.class != expected.class {
        return Err(NotStatic::WrongClass {
            found: file.class.describe(),
            expected: expected.class.describe(),
            platform: platform.to_owned(),
        });
    }
    if file.endian != expected.endian {
        return Err(NotStatic::WrongEndian {
            found: endian_name(file.endian),
            expected: endian_name(expected.endian),
            platform: platform.to_owned(),
        });
    }
    if header.e_type != ET_EXEC && header.e_type != ET_DYN {
        return Err(NotStatic::NotExecutable(type_name(header.e_type)));
    }
    Ok(header)
}

/// Checks that `data` is a static executable for `expected` (machine, class
/// and byte order); `platform` names it in messages.
pub fn check_static(data: &[u8], expected: ElfMachine, platform: &str) -> Result<(), NotStatic> {
    let header = checked_header(data, expected, platform)?;
    let file = header.file;
    let segments = header.program_headers()?;

    let mut interpreter = None;
    for seg in segments.iter().filter(|s| s.p_type == PT_INTERP) {
        let bytes = file
            .bytes(seg.offset, seg.filesz)
            .ok_or_else(|| malformed("its PT_INTERP segment lies outside the file"))?;
        let name = bytes.split(|&b| b == 0).next().unwrap_or_default();
        interpreter = Some(String::from_utf8_lossy(name).into_owned());
    }

    // Both loaders (glibc's and musl's) read one PT_DYNAMIC; a file with
    // several is not one a toolchain writes, and reading each would let a
    // hostile header multiply the work.
    let mut dynamic = segments.iter().filter(|s| s.p_type == PT_DYNAMIC);
    let first = dynamic.next();
    if dynamic.next().is_some() {
        return Err(malformed("it has more than one PT_DYNAMIC segment"));
    }
    let mut needed = Vec::new();
    if let Some(seg) = first {
        let (strtab_addr, offsets) = dynamic_entries(file, seg)?;
        if !offsets.is_empty() {
            // DT_STRTAB holds a virtual address; find the file bytes the
            // loader would map there.
            let strtab = strtab_addr.and_then(|addr| {
                segments
                    .iter()
                    .filter(|s| s.p_type == PT_LOAD)
                    .find_map(|s| file.at_address(s, addr))
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
    }

    if interpreter.is_some() || !needed.is_empty() {
        return Err(NotStatic::Dynamic {
            interpreter,
            needed,
        });
    }
    Ok(())
}

/// The `DT_STRTAB` address and the `DT_NEEDED` string offsets of a
/// `PT_DYNAMIC` segment, read up to `DT_NULL` or the segment's end.
fn dynamic_entries(file: File<'_>, seg: &Segment) -> Result<(Option<u64>, Vec<u64>), NotStatic> {
    let entry = file.class.word() * 2;
    let bytes = file
        .bytes(seg.offset, seg.filesz)
        .ok_or_else(|| malformed("its PT_DYNAMIC segment lies outside the file"))?;
    if bytes.len() % entry != 0 {
        return Err(malformed(
            "its PT_DYNAMIC segment is not a whole number of entries",
        ));
    }
    let dynamic = File {
        data: bytes,
        ..file
    };
    let mut strtab = None;
    let mut needed = Vec::new();
    for at in (0..bytes.len()).step_by(entry) {
        let at = at as u64;
        let (Some(tag), Some(value)) = (dynamic.word(at), dynamic.word(at + entry as u64 / 2))
        else {
            break;
        };
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(value),
            DT_NEEDED => needed.push(value),
            _ => {}
        }
    }
    Ok((strtab, needed))
}

/// The bytes of the section called `name`, if the file is ELF and has one
/// (a `SHT_NOBITS` section has none). Section headers are what linkers and
/// scanners read for non-loaded data such as `.dep-v0`; the static proof
/// never relies on them.
pub fn section<'a>(data: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let header = Header::parse(data).ok()?;
    let file = header.file;
    if header.shoff == 0 {
        return None;
    }
    let size = file.class.section_header_size();
    if u64::from(header.shentsize) != size {
        return None;
    }
    let section = |i: u64| -> Option<SectionHeader> {
        let at = header.shoff.checked_add(i.checked_mul(size)?)?;
        file.bytes(at, size)?;
        SectionHeader::read(file, at)
    };
    // Extended numbering: a count or index too large for the ELF header
    // lives in section 0 (gABI, "Sections").
    let zero = section(0)?;
    let count = match header.shnum {
        0 => zero.size,
        n => u64::from(n),
    };
    // The table must lie inside the file, which also bounds the loop.
    file.bytes(header.shoff, count.checked_mul(size)?)?;
    let names_index = match header.shstrndx {
        SHN_XINDEX => u64::from(zero.link),
        i => u64::from(i),
    };
    if names_index >= count {
        return None;
    }
    let names = section(names_index)?;
    let names = file.bytes(names.offset, names.size)?;
    (0..count).find_map(|i| {
        let s = section(i)?;
        let at = names.get(usize::try_from(s.name).ok()?..)?;
        let end = at.iter().position(|&b| b == 0)?;
        if &at[..end] != name.as_bytes() {
            return None;
        }
        if s.kind == SHT_NOBITS {
            return Some(&data[..0]);
        }
        file.bytes(s.offset, s.size)
    })
}

fn malformed(what: &str) -> NotStatic {
    NotStatic::Malformed(what.to_owned())
}

fn type_name(e_type: u16) -> String {
    match e_type {
        0 => "ET_NONE".to_owned(),
        ET_REL => "ET_REL".to_owned(),
        4 => "ET_CORE".to_owned(),
        other => format!("{other:#x}"),
    }
}

/// What a file that is not ELF most likely is, from its first bytes.
fn not_elf(data: &[u8]) -> NotStatic {
    let kind = match data {
        [b'#', b'!', ..] => "a script",
        [b'!', b'<', b'a', b'r', b'c', b'h', b'>', b'\n', ..] => "an ar archive",
        [0xfe, 0xed, 0xfa, 0xce | 0xcf, ..]
        | [0xce | 0xcf, 0xfa, 0xed, 0xfe, ..]
        | [0xca, 0xfe, 0xba, 0xbe, ..] => "a Mach-O file",
        [b'M', b'Z', ..] => "a PE/DOS executable",
        [0, b'a', b's', b'm', ..] => "a WebAssembly module",
        _ => "unrecognised format",
    };
    NotStatic::NotElf(kind.to_owned())
}

/// An ELF file's bytes with its class and byte order: every read is
/// bounds-checked and answers `None` outside the bytes.
#[derive(Clone, Copy)]
pub struct File<'a> {
    pub data: &'a [u8],
    pub class: Class,
    pub endian: Endian,
}

impl<'a> File<'a> {
    /// `len` bytes at `offset`, if they are all inside the file.
    pub fn bytes(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    fn array<const N: usize>(&self, offset: u64) -> Option<[u8; N]> {
        self.bytes(offset, N as u64)?.try_into().ok()
    }

    /// The two bytes at `offset` as an integer of the file's byte order.
    pub fn u16(&self, offset: u64) -> Option<u16> {
        let b = self.array(offset)?;
        Some(match self.endian {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    }

    /// The four bytes at `offset` as an integer of the file's byte order.
    pub fn u32(&self, offset: u64) -> Option<u32> {
        let b = self.array(offset)?;
        Some(match self.endian {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }

    /// The eight bytes at `offset` as an integer of the file's byte order.
    pub fn u64(&self, offset: u64) -> Option<u64> {
        let b = self.array(offset)?;
        Some(match self.endian {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        })
    }

    /// An address-sized field: `Elf32_Addr`/`Elf32_Off` or the 64-bit forms.
    pub(crate) fn word(&self, offset: u64) -> Option<u64> {
        match self.class {
            Class::Elf32 => self.u32(offset).map(u64::from),
            Class::Elf64 => self.u64(offset),
        }
    }

    /// The file bytes a `PT_LOAD` segment maps at virtual address `addr`,
    /// to the end of the segment's file image.
    fn at_address(&self, seg: &Segment, addr: u64) -> Option<&'a [u8]> {
        // Checked arithmetic: a hostile header must not overflow.
        let end = seg.vaddr.checked_add(seg.filesz)?;
        if addr < seg.vaddr || addr >= end {
            return None;
        }
        let skip = addr - seg.vaddr;
        self.bytes(seg.offset.checked_add(skip)?, seg.filesz - skip)
    }
}

impl Class {
    /// Bytes in an address-sized field.
    fn word(self) -> usize {
        match self {
            Class::Elf32 => 4,
            Class::Elf64 => 8,
        }
    }

    fn header_size(self) -> u64 {
        match self {
            Class::Elf32 => 52,
            Class::Elf64 => 64,
        }
    }

    fn program_header_size(self) -> u64 {
        match self {
            Class::Elf32 => 32,
            Class::Elf64 => 56,
        }
    }

    fn section_header_size(self) -> u64 {
        match self {
            Class::Elf32 => 40,
            Class::Elf64 => 64,
        }
    }
}

/// The ELF header fields the proof and the section lookup read.
struct Header<'a> {
    file: File<'a>,
    e_type: u16,
    machine: Machine,
    phoff: u64,
    shoff: u64,
    phentsize: u16,
    phnum: u16,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

impl<'a> Header<'a> {
    fn parse(data: &'a [u8]) -> Result<Header<'a>, NotStatic> {
        if data.get(..4) != Some(b"\x7fELF") {
            return Err(not_elf(data));
        }
        let ident = |i: usize| data.get(i).copied();
        let class = match ident(4) {
            Some(1) => Class::Elf32,
            Some(2) => Class::Elf64,
            Some(other) => {
                return Err(NotStatic::Malformed(format!(
                    "its ELF class is {other}, neither 32-bit (1) nor 64-bit (2)"
                )));
            }
            None => return Err(malformed("it ends inside its ELF header")),
        };
        let endian = match ident(5) {
            Some(1) => Endian::Little,
            Some(2) => Endian::Big,
            Some(other) => {
                return Err(NotStatic::Malformed(format!(
                    "its ELF byte order is {other}, neither little- (1) nor big-endian (2)"
                )));
            }
            None => return Err(malformed("it ends inside its ELF header")),
        };
        let file = File {
            data,
            class,
            endian,
        };
        if (data.len() as u64) < class.header_size() {
            return Err(malformed("it ends inside its ELF header"));
        }
        if ident(6) != Some(1) {
            return Err(NotStatic::Malformed(format!(
                "its ELF header version is {}, not 1",
                ident(6).unwrap_or_default()
            )));
        }
        // The header is whole, so every fixed-offset read below succeeds;
        // a zero stands in for what cannot happen.
        let u16_at = |o: u64| file.u16(o).unwrap_or(0);
        let (phoff, shoff, rest) = match class {
            Class::Elf32 => (file.u32(28).map(u64::from), file.u32(32).map(u64::from), 40),
            Class::Elf64 => (file.u64(32), file.u64(40), 52),
        };
        Ok(Header {
            file,
            e_type: u16_at(16),
            machine: Machine(u16_at(18)),
            phoff: phoff.unwrap_or(0),
            shoff: shoff.unwrap_or(0),
            phentsize: u16_at(rest + 2),
            phnum: u16_at(rest + 4),
            shentsize: u16_at(rest + 6),
            shnum: u16_at(rest + 8),
            shstrndx: u16_at(rest + 10),
        })
    }

    /// The program header table, every entry inside the file.
    fn program_headers(&self) -> Result<Vec<Segment>, NotStatic> {
        let file = self.file;
        if self.phoff == 0 || self.phnum == 0 {
            // The kernel refuses to execute such a file (binfmt_elf).
            return Err(malformed(
                "it has no program headers, so no loader can run it",
            ));
        }
        let size = file.class.program_header_size();
        if u64::from(self.phentsize) != size {
            return Err(NotStatic::Malformed(format!(
                "its program headers are {} bytes each; a {} file's are {size}",
                self.phentsize,
                file.class.describe()
            )));
        }
        let total = u64::from(self.phnum) * size;
        if total > MAX_PROGRAM_HEADERS {
            return Err(NotStatic::Malformed(format!(
                "its {} program headers take {total} bytes, more than the {MAX_PROGRAM_HEADERS} \
                 Linux loads",
                self.phnum
            )));
        }
        file.bytes(self.phoff, total)
            .ok_or_else(|| malformed("its program headers lie outside the file"))?;
        (0..u64::from(self.phnum))
            .map(|i| Segment::read(file, self.phoff + i * size))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("its program headers lie outside the file"))
    }
}

/// The program header fields the proof reads.
struct Segment {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

impl Segment {
    fn read(file: File<'_>, at: u64) -> Option<Segment> {
        // ELF64 moves p_flags up beside p_type to keep the 8-byte fields
        // aligned; the order of the rest is the same.
        let (offset, vaddr, filesz) = match file.class {
            Class::Elf32 => (at + 4, at + 8, at + 16),
            Class::Elf64 => (at + 8, at + 16, at + 32),
        };
        Some(Segment {
            p_type: file.u32(at)?,
            offset: file.word(offset)?,
            vaddr: file.word(vaddr)?,
            filesz: file.word(filesz)?,
        })
    }
}

/// The section header fields the section lookup reads.
struct SectionHeader {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

impl SectionHeader {
    fn read(file: File<'_>, at: u64) -> Option<SectionHeader> {
        let (offset, size, link) = match file.class {
            Class::Elf32 => (at + 16, at + 20, at + 24),
            Class::Elf64 => (at + 24, at + 32, at + 40),
        };
        Some(SectionHeader {
            name: file.u32(at)?,
            kind: file.u32(at + 4)?,
            offset: file.word(offset)?,
            size: file.word(size)?,
            link: file.u32(link)?,
        })
    }
}

fn machine_name(machine: Machine) -> String {
    let name = match machine {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        EM_386 => "i386",
        EM_ARM => "arm",
        EM_RISCV => "riscv",
        EM_PPC64 => "ppc64",
        EM_PPC => "ppc",
        EM_S390 => "s390",
        EM_MIPS => "mips",
        _ => return format!("ELF machine {}", machine.0),
    };
    name.to_owned()
}

fn endian_name(endian: Endian) -> &'static str {
    match endian {
        Endian::Little => "little-endian",
        Endian::Big => "big-endian",
    }
}

#[cfg(test)]
pub(crate) mod tests;
