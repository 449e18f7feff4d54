//! The crates a binary links, embedded in the binary itself the way
//! cargo-auditable does (its `.dep-v0` section: zlib-compressed JSON of the
//! dependency tree, format of the `cargo-auditable.schema.json` it
//! publishes), so scanners that read it (syft, trivy, grype, `cargo audit
//! bin`) see the crates of a scratch image, which has no package database.
//! Here the section comes in an ELF object file that the link takes in; the
//! compile step writes one per binary and triple with [`prepare`].

use std::path::Path;

use serde_json::{Value, json};

use crate::elf::{self, Class, Endian, Machine};
use crate::toolchain::crates::LinkedCrates;

/// The section scanners look for.
pub const SECTION: &str = ".dep-v0";
/// The symbol that holds the data; the link is told it is needed, so
/// `--gc-sections` cannot drop the section.
pub const SYMBOL: &str = "AUDITABLE_VERSION_INFO";

#[derive(Debug, thiserror::Error)]
pub enum CrateListError {
    #[error("embedding the crate list: no ELF architecture is known for target `{0}`")]
    Target(String),
    #[error(
        "embedding the crate list: the list is {0} bytes, more than a 32-bit object file holds"
    )]
    TooLarge(usize),
    #[error("embedding the crate list: writing {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The dependency tree as cargo-auditable's JSON: one entry per crate with
/// name, version, source (`crates.io`, `git`, `local` or `registry`),
/// dependencies as indexes into the list, and `root` on the binary's own
/// package. Crates are in `name@version` order, so the bytes depend only on
/// the tree.
pub fn dependency_json(crates: &LinkedCrates) -> Vec<u8> {
    let keys: Vec<&String> = crates.crates.keys().collect();
    let index = |key: &str| keys.iter().position(|k| *k == key);
    let packages: Vec<Value> = crates
        .crates
        .iter()
        .map(|(key, c)| {
            let source = match c.source.as_deref() {
                None => "local",
                Some(s) if s.starts_with("git+") => "git",
                Some(
                    "registry+https://github.com/rust-lang/crates.io-index"
                    | "sparse+https://index.crates.io/",
                ) => "crates.io",
                Some(_) => "registry",
            };
            let mut deps: Vec<usize> = crates
                .edges
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|d| index(d))
                .collect();
            deps.sort_unstable();
            let mut package = json!({
                "name": c.name,
                "version": c.version,
                "source": source,
            });
            if !deps.is_empty() {
                package["dependencies"] = json!(deps);
            }
            if *key == crates.root {
                package["root"] = json!(true);
            }
            package
        })
        .collect();
    crate::oci::canonical_json(&json!({ "packages": packages }))
}

/// `json` compressed with zlib by the pinned deflate implementation, at a
/// fixed level: the same list, the same bytes.
pub fn compress(json: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(json, 9)
}

/// The ELF machine, class, byte order and header flags of `triple`'s
/// objects. The flags matter where the linker refuses to mix ABIs: ARM's
/// EABI version and hard-float convention, RISC-V's compressed instructions
/// and float ABI, the 64-bit PowerPC ABI version.
fn architecture(triple: &str) -> Option<(Machine, Class, Endian, u32)> {
    let arch = triple.split('-').next()?;
    let hard_float = triple.ends_with("eabihf");
    let little = Endian::Little;
    Some(match arch {
        "x86_64" => (elf::EM_X86_64, Class::Elf64, little, 0),
        "aarch64" => (elf::EM_AARCH64, Class::Elf64, little, 0),
        "i586" | "i686" => (elf::EM_386, Class::Elf32, little, 0),
        // EF_RISCV_RVC | EF_RISCV_FLOAT_ABI_DOUBLE: riscv64gc targets use
        // the lp64d ABI, and the linker refuses to mix float ABIs.
        "riscv64gc" => (elf::EM_RISCV, Class::Elf64, little, 0x0005),
        // EF_ARM_EABI_VER5 with EF_ARM_ABI_FLOAT_HARD or _SOFT.
        "armv7" | "arm" => (
            elf::EM_ARM,
            Class::Elf32,
            little,
            0x0500_0000 | if hard_float { 0x400 } else { 0x200 },
        ),
        // ELFv2, the only ABI of little-endian and musl 64-bit PowerPC.
        "powerpc64le" => (elf::EM_PPC64, Class::Elf64, little, 2),
        "powerpc64" => (elf::EM_PPC64, Class::Elf64, Endian::Big, 2),
        "s390x" => (elf::EM_S390, Class::Elf64, Endian::Big, 0),
        _ => return None,
    })
}

/// Integers of one ELF file's class and byte order, appended to a buffer.
struct Out {
    bytes: Vec<u8>,
    class: Class,
    endian: Endian,
}

impl Out {
    fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
    }
    fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
    }
    /// An address-sized field; callers keep 32-bit values in range (checked
    /// once, on the section size, in [`object_file`]).
    fn word(&mut self, v: u64) {
        match (self.class, self.endian) {
            (Class::Elf64, Endian::Little) => self.bytes.extend_from_slice(&v.to_le_bytes()),
            (Class::Elf64, Endian::Big) => self.bytes.extend_from_slice(&v.to_be_bytes()),
            (Class::Elf32, _) => self.u32(v as u32),
        }
    }
    fn align(&mut self, to: usize) {
        while !self.bytes.len().is_multiple_of(to) {
            self.bytes.push(0);
        }
    }
    fn at(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Section names, in the order of `SHSTRTAB` below, and their offsets there.
const SHSTRTAB: &[u8] = b"\0.shstrtab\0.strtab\0.symtab\0.dep-v0\0";
const NAME_SHSTRTAB: u32 = 1;
const NAME_STRTAB: u32 = 11;
const NAME_SYMTAB: u32 = 19;
const NAME_DEP: u32 = 27;

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHF_ALLOC: u64 = 2;
/// STB_GLOBAL << 4 | STT_OBJECT.
const GLOBAL_OBJECT: u8 = 0x11;
const STV_HIDDEN: u8 = 2;

/// A section header's fields: name, type, flags, offset, size, link, info,
/// alignment and entry size.
type SectionRow = (u32, u32, u64, u64, u64, u32, u32, u64, u64);

/// The sizes that differ between 32- and 64-bit files: the ELF header, a
/// section header, a symbol, and the alignment of the tables.
struct Sizes {
    ehsize: u16,
    shentsize: u16,
    symentsize: u64,
    align: usize,
}

impl Sizes {
    fn of(class: Class) -> Sizes {
        let (ehsize, shentsize, symentsize, align) = match class {
            Class::Elf64 => (64, 64, 24, 8),
            Class::Elf32 => (52, 40, 16, 4),
        };
        Sizes {
            ehsize,
            shentsize,
            symentsize,
            align,
        }
    }
}

impl Out {
    /// The symbol table: the null symbol, then [`SYMBOL`], global and
    /// hidden, covering the `size` bytes of section 1 from its start. The
    /// fields come in a different order in 32- and 64-bit files.
    fn symbols(&mut self, symentsize: u64, size: u64) {
        self.bytes.resize(self.bytes.len() + symentsize as usize, 0);
        self.u32(1); // st_name: the symbol's name in .strtab
        if self.class == Class::Elf64 {
            self.u8(GLOBAL_OBJECT);
            self.u8(STV_HIDDEN);
            self.u16(1); // st_shndx: .dep-v0
            self.word(0); // st_value: the start of the section
            self.word(size);
        } else {
            self.word(0);
            self.word(size);
            self.u8(GLOBAL_OBJECT);
            self.u8(STV_HIDDEN);
            self.u16(1);
        }
    }

    fn section_header(&mut self, row: SectionRow) {
        let (name, kind, flags, offset, size, link, info, align, entsize) = row;
        self.u32(name);
        self.u32(kind);
        self.word(flags);
        self.word(0); // sh_addr: nothing is placed before the link
        self.word(offset);
        self.word(size);
        self.u32(link);
        self.u32(info);
        self.word(align);
        self.word(entsize);
    }

    /// The ELF header of a relocatable object whose section header table
    /// (`sections` entries, the last of them the section names) is at
    /// `shoff`.
    fn elf_header(
        &mut self,
        machine: Machine,
        e_flags: u32,
        shoff: u64,
        sizes: &Sizes,
        sections: u16,
    ) {
        self.bytes.extend_from_slice(b"\x7fELF");
        self.u8(if self.class == Class::Elf64 { 2 } else { 1 });
        self.u8(if self.endian == Endian::Big { 2 } else { 1 });
        self.u8(1); // EI_VERSION
        self.u8(0); // EI_OSABI: System V
        self.bytes.resize(16, 0); // EI_ABIVERSION and padding
        self.u16(elf::ET_REL);
        self.u16(machine.0);
        self.u32(1); // e_version
        self.word(0); // e_entry
        self.word(0); // e_phoff: no program headers in an object file
        self.word(shoff);
        self.u32(e_flags);
        self.u16(sizes.ehsize);
        self.u16(0); // e_phentsize
        self.u16(0); // e_phnum
        self.u16(sizes.shentsize);
        self.u16(sections);
        self.u16(sections - 1); // e_shstrndx: .shstrtab, the last section
    }
}

/// A relocatable ELF object for `triple` whose `.dep-v0` section holds
/// `data`, named by the global (hidden) symbol [`SYMBOL`].
///
/// The layout is the one linkers expect of a data-only object (gABI,
/// "Object Files"): the ELF header, the section's bytes, the symbol table
/// (a null symbol and [`SYMBOL`]), its string table, the section names, and
/// the section header table (null, `.dep-v0`, `.symtab`, `.strtab`,
/// `.shstrtab`). No relocations: the data is self-contained.
pub fn object_file(triple: &str, data: &[u8]) -> Result<Vec<u8>, CrateListError> {
    let (machine, class, endian, e_flags) =
        architecture(triple).ok_or_else(|| CrateListError::Target(triple.to_owned()))?;
    // Every offset of a 32-bit file, the section header table's last, fits 32 bits.
    if class == Class::Elf32 && u32::try_from(data.len() + 4096).is_err() {
        return Err(CrateListError::TooLarge(data.len()));
    }
    let sizes = Sizes::of(class);
    let (symentsize, align) = (sizes.symentsize, sizes.align);
    let mut strtab = vec![0];
    strtab.extend_from_slice(SYMBOL.as_bytes());
    strtab.push(0);

    let mut out = Out {
        bytes: Vec::new(),
        class,
        endian,
    };
    // The header is written last, over these zeros, once offsets are known.
    out.bytes.resize(usize::from(sizes.ehsize), 0);
    let data_at = out.at();
    out.bytes.extend_from_slice(data);
    out.align(align);
    let symtab_at = out.at();
    out.symbols(symentsize, data.len() as u64);
    let strtab_at = out.at();
    out.bytes.extend_from_slice(&strtab);
    let shstrtab_at = out.at();
    out.bytes.extend_from_slice(SHSTRTAB);
    out.align(align);
    let shoff = out.at();

    let sections: [SectionRow; 5] = [
        (0, 0, 0, 0, 0, 0, 0, 0, 0),
        (
            NAME_DEP,
            SHT_PROGBITS,
            SHF_ALLOC,
            data_at,
            data.len() as u64,
            0,
            0,
            1,
            0,
        ),
        // sh_link: the string table; sh_info: one past the last local symbol.
        (
            NAME_SYMTAB,
            SHT_SYMTAB,
            0,
            symtab_at,
            2 * symentsize,
            3,
            1,
            align as u64,
            symentsize,
        ),
        (
            NAME_STRTAB,
            SHT_STRTAB,
            0,
            strtab_at,
            strtab.len() as u64,
            0,
            0,
            1,
            0,
        ),
        (
            NAME_SHSTRTAB,
            SHT_STRTAB,
            0,
            shstrtab_at,
            SHSTRTAB.len() as u64,
            0,
            0,
            1,
            0,
        ),
    ];
    for row in sections {
        out.section_header(row);
    }

    let body = std::mem::take(&mut out.bytes);
    out.elf_header(machine, e_flags, shoff, &sizes, sections.len() as u16);
    let mut bytes = out.bytes;
    bytes.extend_from_slice(&body[usize::from(sizes.ehsize)..]);
    Ok(bytes)
}

/// How the link step is driven: through a C compiler driver (cargo's
/// default `cc`), or by an ld-compatible linker directly (`rust-lld` for
/// foreign triples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linker {
    CcDriver,
    LdDirect,
}

/// The rustc arguments that link `object` into a binary and keep its
/// section: `-C link-arg=<object>` and the undefined-symbol request in the
/// linker's own spelling.
pub fn link_rustflags(object: &Path, linker: Linker) -> Vec<String> {
    let keep = match linker {
        Linker::CcDriver => format!("-Wl,--undefined={SYMBOL}"),
        Linker::LdDirect => format!("--undefined={SYMBOL}"),
    };
    vec![
        "-C".to_owned(),
        format!("link-arg={}", object.display()),
        "-C".to_owned(),
        format!("link-arg={keep}"),
    ]
}

/// Writes the object file for `crates` on `triple` to `path` (creating its
/// directory) and returns the rustc arguments that link it in. Meant for the
/// final crate of one binary only (the compile step's rustc wrapper adds
/// them there): every binary gets its own list.
pub fn prepare(
    crates: &LinkedCrates,
    triple: &str,
    path: &Path,
    linker: Linker,
) -> Result<Vec<String>, CrateListError> {
    let bytes = object_file(triple, &compress(&dependency_json(crates)))?;
    let write_err = |source| CrateListError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    // Unchanged bytes are not rewritten, so cargo sees nothing new to link.
    if std::fs::read(path).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(path, &bytes).map_err(write_err)?;
    }
    Ok(link_rustflags(path, linker))
}

/// The compressed list in an ELF binary's `.dep-v0` section, if it has one.
pub fn read_section(binary: &[u8]) -> Option<Vec<u8>> {
    crate::elf::section(binary, SECTION).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::toolchain::crates::Crate;

    fn tree() -> LinkedCrates {
        let c = |name: &str, version: &str, source: Option<&str>| Crate {
            name: name.into(),
            version: version.into(),
            license: None,
            source: source.map(Into::into),
            checksum: None,
        };
        let crates_io = Some("registry+https://github.com/rust-lang/crates.io-index");
        LinkedCrates {
            root: "app@0.1.0".into(),
            crates: BTreeMap::from([
                ("app@0.1.0".into(), c("app", "0.1.0", None)),
                ("itoa@1.0.15".into(), c("itoa", "1.0.15", crates_io)),
                (
                    "serde@1.0.0".into(),
                    c(
                        "serde",
                        "1.0.0",
                        Some("git+https://example.invalid/serde#abc"),
                    ),
                ),
            ]),
            edges: BTreeMap::from([
                (
                    "app@0.1.0".into(),
                    BTreeSet::from(["serde@1.0.0".into(), "itoa@1.0.15".into()]),
                ),
                ("itoa@1.0.15".into(), BTreeSet::new()),
                ("serde@1.0.0".into(), BTreeSet::new()),
            ]),
        }
    }

    #[test]
    fn the_list_is_cargo_auditable_json() {
        let json: Value = serde_json::from_slice(&dependency_json(&tree())).unwrap();
        assert_eq!(
            json,
            json!({"packages": [
                {"name": "app", "version": "0.1.0", "source": "local", "dependencies": [1, 2], "root": true},
                {"name": "itoa", "version": "1.0.15", "source": "crates.io"},
                {"name": "serde", "version": "1.0.0", "source": "git"},
            ]})
        );
    }

    /// Every supported triple, with the machine, class, byte order and
    /// `e_flags` its objects must carry.
    const TRIPLES: &[(&str, u16, Class, Endian, u32)] = &[
        (
            "x86_64-unknown-linux-musl",
            62,
            Class::Elf64,
            Endian::Little,
            0,
        ),
        (
            "aarch64-unknown-linux-musl",
            183,
            Class::Elf64,
            Endian::Little,
            0,
        ),
        (
            "armv7-unknown-linux-musleabihf",
            40,
            Class::Elf32,
            Endian::Little,
            0x0500_0400,
        ),
        (
            "arm-unknown-linux-musleabi",
            40,
            Class::Elf32,
            Endian::Little,
            0x0500_0200,
        ),
        (
            "i686-unknown-linux-musl",
            3,
            Class::Elf32,
            Endian::Little,
            0,
        ),
        (
            "i586-unknown-linux-musl",
            3,
            Class::Elf32,
            Endian::Little,
            0,
        ),
        (
            "riscv64gc-unknown-linux-musl",
            243,
            Class::Elf64,
            Endian::Little,
            5,
        ),
        (
            "powerpc64le-unknown-linux-musl",
            21,
            Class::Elf64,
            Endian::Little,
            2,
        ),
        (
            "powerpc64-unknown-linux-gnu",
            21,
            Class::Elf64,
            Endian::Big,
            2,
        ),
        ("s390x-unknown-linux-gnu", 22, Class::Elf64, Endian::Big, 0),
    ];

    /// The symbols of an object file: (name, value, size, info, other, shndx).
    fn symbols(bytes: &[u8], class: Class, endian: Endian) -> Vec<(String, u64, u64, u8, u8, u16)> {
        let symtab = crate::elf::section(bytes, ".symtab").unwrap();
        let strtab = crate::elf::section(bytes, ".strtab").unwrap();
        let f = crate::elf::File {
            data: symtab,
            class,
            endian,
        };
        let size = if class == Class::Elf64 { 24 } else { 16 };
        assert_eq!(symtab.len() % size, 0);
        (0..(symtab.len() / size) as u64)
            .map(|i| {
                let at = i * size as u64;
                let name = f.u32(at).unwrap() as usize;
                let name = strtab[name..].split(|&b| b == 0).next().unwrap();
                let name = String::from_utf8(name.to_vec()).unwrap();
                match class {
                    Class::Elf64 => (
                        name,
                        f.u64(at + 8).unwrap(),
                        f.u64(at + 16).unwrap(),
                        symtab[at as usize + 4],
                        symtab[at as usize + 5],
                        f.u16(at + 6).unwrap(),
                    ),
                    Class::Elf32 => (
                        name,
                        u64::from(f.u32(at + 4).unwrap()),
                        u64::from(f.u32(at + 8).unwrap()),
                        symtab[at as usize + 12],
                        symtab[at as usize + 13],
                        f.u16(at + 14).unwrap(),
                    ),
                }
            })
            .collect()
    }

    #[test]
    fn the_object_file_carries_the_compressed_list_under_its_symbol() {
        let json = dependency_json(&tree());
        let data = compress(&json);
        // A list far larger than any real one, too, for the offsets.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
        for &(triple, machine, class, endian, flags) in TRIPLES {
            for data in [&data[..], &big[..]] {
                let bytes = object_file(triple, data).unwrap();
                let f = crate::elf::File {
                    data: &bytes,
                    class,
                    endian,
                };
                assert_eq!(&bytes[..4], b"\x7fELF");
                assert_eq!(f.u16(16), Some(crate::elf::ET_REL), "{triple}");
                assert_eq!(f.u16(18), Some(machine), "{triple}");
                let flags_at = if class == Class::Elf64 { 48 } else { 36 };
                assert_eq!(f.u32(flags_at), Some(flags), "{triple}");
                assert_eq!(read_section(&bytes).as_deref(), Some(data), "{triple}");
                assert_eq!(
                    symbols(&bytes, class, endian),
                    [
                        (String::new(), 0, 0, 0, 0, 0),
                        // Global object, hidden, in section 1 (.dep-v0).
                        (SYMBOL.to_owned(), 0, data.len() as u64, 0x11, 2, 1),
                    ],
                    "{triple}"
                );
            }
        }
        let back = miniz_oxide::inflate::decompress_to_vec_zlib(
            &read_section(&object_file("x86_64-unknown-linux-musl", &data).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(back, json);
        assert!(matches!(
            object_file("sparc-unknown-linux-gnu", &data),
            Err(CrateListError::Target(_))
        ));
    }

    #[test]
    fn the_object_file_bytes_are_pinned_for_every_triple() {
        // Each fixture is what the `object` crate (0.40) wrote for the same
        // list; linkers have taken those, and the same bytes keep every
        // example binary, and so every image digest, unchanged.
        let data = compress(
            br#"{"packages":[{"name":"x","root":true,"source":"local","version":"0.1.0"}]}"#,
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/compile/crate_list");
        for &(triple, ..) in TRIPLES {
            let want = std::fs::read(dir.join(format!("{triple}.o"))).unwrap();
            assert_eq!(object_file(triple, &data).unwrap(), want, "{triple}");
        }
    }

    #[test]
    fn link_arguments_follow_the_linker() {
        let p = Path::new("/w/target/deps.o");
        assert_eq!(
            link_rustflags(p, Linker::CcDriver),
            [
                "-C",
                "link-arg=/w/target/deps.o",
                "-C",
                "link-arg=-Wl,--undefined=AUDITABLE_VERSION_INFO"
            ]
        );
        assert_eq!(
            link_rustflags(p, Linker::LdDirect)[3],
            "link-arg=--undefined=AUDITABLE_VERSION_INFO"
        );
    }
}
