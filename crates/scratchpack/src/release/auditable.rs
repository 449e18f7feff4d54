//! The crates a binary links, embedded in the binary itself the way
//! cargo-auditable does (its `.dep-v0` section: zlib-compressed JSON of the
//! dependency tree, format of the `cargo-auditable.schema.json` it
//! publishes), so scanners that read it (syft, trivy, grype, `cargo audit
//! bin`) see the crates of a scratch image, which has no package database.
//! Here the section comes in an ELF object file that the link takes in; the
//! compile step writes one per binary and triple with [`prepare`].

use std::path::Path;

use object::write::{Object, StandardSegment, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};
use serde_json::{Value, json};

use super::sbom::LinkedCrates;

/// The section scanners look for.
pub const SECTION: &str = ".dep-v0";
/// The symbol that holds the data; the link is told it is needed, so
/// `--gc-sections` cannot drop the section.
pub const SYMBOL: &str = "AUDITABLE_VERSION_INFO";

#[derive(Debug, thiserror::Error)]
pub enum AuditableError {
    #[error("embedding the crate list: no ELF architecture is known for target `{0}`")]
    Target(String),
    #[error("embedding the crate list: writing the object file: {0}")]
    Object(#[from] object::write::Error),
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

/// The ELF machine, byte order and header flags of `triple`'s objects. The
/// flags matter where the linker refuses to mix ABIs: ARM's EABI version and
/// hard-float convention, RISC-V's compressed instructions and float ABI,
/// the 64-bit PowerPC ABI version.
fn architecture(triple: &str) -> Option<(Architecture, Endianness, u32)> {
    let arch = triple.split('-').next()?;
    let hard_float = triple.ends_with("eabihf");
    Some(match arch {
        "x86_64" => (Architecture::X86_64, Endianness::Little, 0),
        "aarch64" => (Architecture::Aarch64, Endianness::Little, 0),
        "i586" | "i686" => (Architecture::I386, Endianness::Little, 0),
        "riscv64gc" => (
            Architecture::Riscv64,
            Endianness::Little,
            // EF_RISCV_RVC | EF_RISCV_FLOAT_ABI_DOUBLE
            0x0005,
        ),
        "armv7" | "arm" => (
            Architecture::Arm,
            Endianness::Little,
            // EF_ARM_EABI_VER5 with EF_ARM_ABI_FLOAT_HARD or _SOFT.
            0x0500_0000 | if hard_float { 0x400 } else { 0x200 },
        ),
        "powerpc64le" => (Architecture::PowerPc64, Endianness::Little, 2),
        "powerpc64" => (Architecture::PowerPc64, Endianness::Big, 2),
        "s390x" => (Architecture::S390x, Endianness::Big, 0),
        _ => return None,
    })
}

/// A relocatable ELF object for `triple` whose `.dep-v0` section holds
/// `data`, named by the global (hidden) symbol [`SYMBOL`].
pub fn object_file(triple: &str, data: &[u8]) -> Result<Vec<u8>, AuditableError> {
    let (arch, endian, e_flags) =
        architecture(triple).ok_or_else(|| AuditableError::Target(triple.to_owned()))?;
    let mut obj = Object::new(BinaryFormat::Elf, arch, endian);
    obj.flags = object::FileFlags::Elf {
        os_abi: object::elf::ELFOSABI_NONE,
        abi_version: 0,
        e_flags: object::elf::FileFlags(e_flags),
    };
    let section = obj.add_section(
        obj.segment_name(StandardSegment::Data).to_vec(),
        SECTION.as_bytes().to_vec(),
        SectionKind::ReadOnlyData,
    );
    let offset = obj.append_section_data(section, data, 1);
    obj.add_symbol(Symbol {
        name: SYMBOL.as_bytes().to_vec(),
        value: offset,
        size: data.len() as u64,
        kind: SymbolKind::Data,
        // Global so the linker can be told it is needed; hidden so it is
        // never exported from the executable.
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(section),
        flags: SymbolFlags::None,
    });
    Ok(obj.write()?)
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
) -> Result<Vec<String>, AuditableError> {
    let bytes = object_file(triple, &compress(&dependency_json(crates)))?;
    let write_err = |source| AuditableError::Write {
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
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(binary).ok()?;
    let section = file.section_by_name(SECTION)?;
    section.data().ok().map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::release::sbom::Crate;

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

    #[test]
    fn the_object_file_carries_the_compressed_list_under_its_symbol() {
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
        let data = compress(&dependency_json(&tree()));
        for (triple, arch) in [
            ("x86_64-unknown-linux-musl", Architecture::X86_64),
            ("aarch64-unknown-linux-musl", Architecture::Aarch64),
        ] {
            let bytes = object_file(triple, &data).unwrap();
            assert_eq!(bytes, object_file(triple, &data).unwrap(), "deterministic");
            let file = object::File::parse(&*bytes).unwrap();
            assert_eq!(file.architecture(), arch);
            let section = file.section_by_name(SECTION).unwrap();
            assert_eq!(section.data().unwrap(), data);
            let symbol = file.symbol_by_name(SYMBOL).unwrap();
            assert_eq!(symbol.size(), data.len() as u64);
            assert!(symbol.is_global());
            let json = miniz_oxide::inflate::decompress_to_vec_zlib(&read_section(&bytes).unwrap())
                .unwrap();
            assert_eq!(json, dependency_json(&tree()));
        }
        assert!(matches!(
            object_file("sparc-unknown-linux-gnu", &data),
            Err(AuditableError::Target(_))
        ));
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
