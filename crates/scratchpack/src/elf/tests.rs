use object::elf::{
    EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_X86_64, ET_DYN, ET_EXEC, ET_REL,
};

use super::*;
use crate::platform::Platform;

/// The shape of a hand-built ELF file.
#[derive(Clone)]
pub(crate) struct Spec<'a> {
    pub class: Class,
    pub endian: Endianness,
    pub e_type: u16,
    pub machine: u16,
    pub interp: Option<&'a str>,
    pub needed: &'a [&'a str],
    /// Whether there is a `PT_DYNAMIC` segment (static-pie has one with no
    /// `DT_NEEDED`).
    pub dynamic: bool,
}

impl<'a> Spec<'a> {
    /// A static executable for `platform`, as its default triple links one.
    pub(crate) fn for_platform(platform: Platform) -> Spec<'a> {
        let m = platform.elf_machine();
        Spec {
            class: m.class,
            endian: m.endian,
            e_type: ET_EXEC.0,
            machine: m.machine.0,
            interp: None,
            needed: &[],
            dynamic: false,
        }
    }

    /// The same binary linked against shared libraries through a loader.
    fn dynamic(self, interp: Option<&'a str>, needed: &'a [&'a str]) -> Spec<'a> {
        Spec {
            e_type: ET_DYN.0,
            interp,
            needed,
            dynamic: true,
            ..self
        }
    }
}

/// Writes integers of the file's width and byte order.
struct Writer {
    out: Vec<u8>,
    big: bool,
    wide: bool,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn u64(&mut self, v: u64) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    /// An address-sized word: `Elf32_Addr`/`Elf32_Off` or their 64-bit forms.
    fn word(&mut self, v: u64) {
        if self.wide {
            self.u64(v);
        } else {
            self.u32(u32::try_from(v).expect("fits a 32-bit file"));
        }
    }
}

/// A minimal ELF image of any class and byte order: a header, program
/// headers, and (when asked) an interpreter string and a dynamic section with
/// needed libraries. One PT_LOAD maps the whole file at address 0x10000.
pub(crate) fn build(spec: &Spec<'_>) -> Vec<u8> {
    const BASE: u64 = 0x10000;
    let wide = spec.class == Class::Elf64;
    let (ehsize, phentsize, dynsize): (u64, u64, u64) =
        if wide { (64, 56, 16) } else { (52, 32, 8) };
    let mut phdrs: Vec<(u32, u64, u64)> = Vec::new(); // (type, offset, size)
    let mut tail = Writer {
        out: Vec::new(),
        big: spec.endian == Endianness::Big,
        wide,
    };
    let n_phdrs = 1 + usize::from(spec.interp.is_some()) + usize::from(spec.dynamic);
    let data_start = ehsize + phentsize * n_phdrs as u64;
    if let Some(i) = spec.interp {
        let off = data_start + tail.out.len() as u64;
        tail.out.extend_from_slice(i.as_bytes());
        tail.out.push(0);
        phdrs.push((elf::PT_INTERP.0, off, i.len() as u64 + 1));
    }
    if spec.dynamic {
        let strtab_off = data_start + tail.out.len() as u64;
        let mut name_offsets = Vec::new();
        tail.out.push(0);
        for n in spec.needed {
            name_offsets.push(data_start + tail.out.len() as u64 - strtab_off);
            tail.out.extend_from_slice(n.as_bytes());
            tail.out.push(0);
        }
        while !tail.out.len().is_multiple_of(8) {
            tail.out.push(0);
        }
        let dyn_off = data_start + tail.out.len() as u64;
        let mut entries: Vec<(u64, u64)> = name_offsets
            .iter()
            .map(|&o| (elf::DT_NEEDED.0 as u64, o))
            .collect();
        entries.push((elf::DT_STRTAB.0 as u64, BASE + strtab_off));
        entries.push((elf::DT_NULL.0 as u64, 0));
        for &(tag, val) in &entries {
            tail.word(tag);
            tail.word(val);
        }
        phdrs.push((elf::PT_DYNAMIC.0, dyn_off, entries.len() as u64 * dynsize));
    }
    let total = data_start + tail.out.len() as u64;
    phdrs.insert(0, (elf::PT_LOAD.0, 0, total));

    let mut w = Writer {
        out: Vec::new(),
        big: tail.big,
        wide,
    };
    let class_byte = if wide { 2 } else { 1 };
    let data_byte = if w.big { 2 } else { 1 };
    w.out
        .extend_from_slice(&[0x7f, b'E', b'L', b'F', class_byte, data_byte, 1, 0]);
    w.out.extend_from_slice(&[0; 8]);
    w.u16(spec.e_type);
    w.u16(spec.machine);
    w.u32(1); // e_version
    w.word(BASE); // e_entry
    w.word(ehsize); // e_phoff
    w.word(0); // e_shoff: no sections at all
    w.u32(0); // e_flags
    w.u16(ehsize as u16);
    w.u16(phentsize as u16);
    w.u16(phdrs.len() as u16);
    w.u16(if wide { 64 } else { 40 }); // e_shentsize
    w.u16(0); // e_shnum
    w.u16(0); // e_shstrndx
    assert_eq!(w.out.len() as u64, ehsize);
    for (p_type, offset, size) in phdrs {
        // The two classes order the fields differently: ELF64 moves p_flags
        // up beside p_type to keep the 8-byte fields aligned.
        w.u32(p_type);
        if wide {
            w.u32(5); // p_flags: R+X
        }
        w.word(offset);
        w.word(BASE + offset); // vaddr
        w.word(BASE + offset); // paddr
        w.word(size); // filesz
        w.word(size); // memsz
        if !wide {
            w.u32(5); // p_flags: R+X
        }
        w.word(8); // align
    }
    assert_eq!(w.out.len() as u64, data_start);
    w.out.extend_from_slice(&tail.out);
    w.out
}

/// A little-endian ELF64 image (the shape of x86_64 and aarch64 binaries).
pub(crate) fn elf64(
    e_type: u16,
    machine: u16,
    interp: Option<&str>,
    needed: &[&str],
    dynamic: bool,
) -> Vec<u8> {
    build(&Spec {
        class: Class::Elf64,
        endian: Endianness::Little,
        e_type,
        machine,
        interp,
        needed,
        dynamic,
    })
}

fn check_for(bin: &[u8], platform: Platform) -> Result<(), NotStatic> {
    check_static(bin, platform.elf_machine(), &platform.to_string())
}

#[test]
fn static_executable_passes() {
    let bin = elf64(ET_EXEC.0, EM_X86_64.0, None, &[], false);
    assert_eq!(check_for(&bin, Platform::LinuxAmd64), Ok(()));
}

#[test]
fn static_pie_passes() {
    // ET_DYN with a dynamic section for self-relocation, but nothing needed.
    let bin = elf64(ET_DYN.0, EM_X86_64.0, None, &[], true);
    assert_eq!(check_for(&bin, Platform::LinuxAmd64), Ok(()));
}

#[test]
fn dynamic_executable_names_loader_and_libraries() {
    let bin = elf64(
        ET_DYN.0,
        EM_X86_64.0,
        Some("/lib/ld-musl-x86_64.so.1"),
        &["libc.so", "libz.so.1"],
        true,
    );
    let err = check_for(&bin, Platform::LinuxAmd64).unwrap_err();
    assert_eq!(
        err,
        NotStatic::Dynamic {
            interpreter: Some("/lib/ld-musl-x86_64.so.1".into()),
            needed: vec!["libc.so".into(), "libz.so.1".into()],
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("/lib/ld-musl-x86_64.so.1") && msg.contains("libz.so.1"),
        "{msg}"
    );
}

#[test]
fn needed_library_without_loader_is_refused() {
    // What a build script linking a system library can leave: DT_NEEDED, no
    // PT_INTERP. It would crash at start in a scratch image.
    let bin = elf64(ET_DYN.0, EM_X86_64.0, None, &["libssl.so.3"], true);
    let err = check_for(&bin, Platform::LinuxAmd64).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("libssl.so.3") && msg.contains("crash"),
        "{msg}"
    );
}

#[test]
fn wrong_machine_is_refused() {
    let bin = elf64(ET_EXEC.0, EM_X86_64.0, None, &[], false);
    let err = check_for(&bin, Platform::LinuxArm64).unwrap_err();
    assert_eq!(
        err.to_string(),
        "it is built for x86_64 but the platform needs aarch64 (linux/arm64)"
    );
}

#[test]
fn non_executables_and_non_elf_are_refused() {
    let obj = elf64(ET_REL.0, EM_X86_64.0, None, &[], false);
    assert!(matches!(
        check_for(&obj, Platform::LinuxAmd64),
        Err(NotStatic::NotExecutable(_))
    ));
    assert!(matches!(
        check_for(b"#!/bin/sh\necho hi\n", Platform::LinuxAmd64),
        Err(NotStatic::NotElf(_))
    ));
}

/// The loader each platform's musl would name, for the dynamic fixtures.
fn musl_loader(platform: Platform) -> &'static str {
    match platform {
        Platform::LinuxAmd64 => "/lib/ld-musl-x86_64.so.1",
        Platform::LinuxArm64 => "/lib/ld-musl-aarch64.so.1",
        Platform::LinuxArmV7 => "/lib/ld-musl-armhf.so.1",
        Platform::Linux386 => "/lib/ld-musl-i386.so.1",
        Platform::LinuxRiscv64 => "/lib/ld-musl-riscv64.so.1",
        Platform::LinuxPpc64le => "/lib/ld-musl-powerpc64le.so.1",
    }
}

#[test]
fn every_platform_accepts_its_static_binaries_and_static_pie() {
    for p in Platform::ALL {
        let exec = build(&Spec::for_platform(p));
        assert_eq!(check_for(&exec, p), Ok(()), "{p} static");
        let pie = build(&Spec {
            e_type: ET_DYN.0,
            dynamic: true,
            ..Spec::for_platform(p)
        });
        assert_eq!(check_for(&pie, p), Ok(()), "{p} static-pie");
    }
}

#[test]
fn every_platform_refuses_a_dynamic_binary_naming_its_libraries() {
    for p in Platform::ALL {
        let loader = musl_loader(p);
        let bin = build(&Spec::for_platform(p).dynamic(Some(loader), &["libc.so", "libfoo.so.2"]));
        assert_eq!(
            check_for(&bin, p),
            Err(NotStatic::Dynamic {
                interpreter: Some(loader.to_owned()),
                needed: vec!["libc.so".into(), "libfoo.so.2".into()],
            }),
            "{p}"
        );
        // A needed library with no loader named is refused all the same.
        let bin = build(&Spec::for_platform(p).dynamic(None, &["libssl.so.3"]));
        let msg = check_for(&bin, p).unwrap_err().to_string();
        assert!(
            msg.contains("libssl.so.3") && msg.contains("crash"),
            "{p}: {msg}"
        );
    }
}

#[test]
fn thirty_two_bit_files_carry_their_machine() {
    let arm = build(&Spec::for_platform(Platform::LinuxArmV7));
    assert_eq!(arm[4], 1, "ELFCLASS32");
    assert_eq!(u16::from_le_bytes([arm[18], arm[19]]), EM_ARM.0);
    let x86 = build(&Spec::for_platform(Platform::Linux386));
    assert_eq!(x86[4], 1, "ELFCLASS32");
    assert_eq!(u16::from_le_bytes([x86[18], x86[19]]), EM_386.0);
    // An i386 binary is not an amd64 one, nor the other way round.
    assert_eq!(
        check_for(&x86, Platform::LinuxAmd64)
            .unwrap_err()
            .to_string(),
        "it is built for i386 but the platform needs x86_64 (linux/amd64)"
    );
    let amd64 = build(&Spec::for_platform(Platform::LinuxAmd64));
    assert_eq!(
        check_for(&amd64, Platform::Linux386)
            .unwrap_err()
            .to_string(),
        "it is built for x86_64 but the platform needs i386 (linux/386)"
    );
}

#[test]
fn the_class_must_match_the_platform() {
    // x32 (EM_X86_64 in a 32-bit file) and a 64-bit EM_ARM file share the
    // machine number with a supported platform, not its class.
    let x32 = build(&Spec {
        class: Class::Elf32,
        ..Spec::for_platform(Platform::LinuxAmd64)
    });
    assert_eq!(
        check_for(&x32, Platform::LinuxAmd64)
            .unwrap_err()
            .to_string(),
        "it is a 32-bit ELF file; linux/amd64 needs a 64-bit one"
    );
    let arm64_class = build(&Spec {
        class: Class::Elf64,
        ..Spec::for_platform(Platform::LinuxArmV7)
    });
    assert_eq!(
        check_for(&arm64_class, Platform::LinuxArmV7).unwrap_err(),
        NotStatic::WrongClass {
            found: "64-bit",
            expected: "32-bit",
            platform: "linux/arm/v7".into(),
        }
    );
}

#[test]
fn the_byte_order_must_match_the_platform() {
    // ppc64 and ppc64le share EM_PPC64 and the class; only EI_DATA differs.
    let big = build(&Spec {
        endian: Endianness::Big,
        ..Spec::for_platform(Platform::LinuxPpc64le)
    });
    assert_eq!(u16::from_be_bytes([big[18], big[19]]), EM_PPC64.0);
    assert_eq!(
        check_for(&big, Platform::LinuxPpc64le)
            .unwrap_err()
            .to_string(),
        "it is a big-endian ELF file; linux/ppc64le needs a little-endian one"
    );
    // A big-endian dynamic file is read in its own byte order: its
    // libraries are named, not garbled.
    let big_dynamic = build(
        &Spec {
            endian: Endianness::Big,
            ..Spec::for_platform(Platform::LinuxPpc64le)
        }
        .dynamic(Some("/lib/ld64.so.1"), &["libc.so.6"]),
    );
    let expected = ElfMachine {
        endian: Endianness::Big,
        ..Platform::LinuxPpc64le.elf_machine()
    };
    assert_eq!(
        check_static(&big_dynamic, expected, "linux/ppc64"),
        Err(NotStatic::Dynamic {
            interpreter: Some("/lib/ld64.so.1".into()),
            needed: vec!["libc.so.6".into()],
        })
    );
}

#[test]
fn riscv_and_arm_machines_are_named() {
    let riscv = build(&Spec::for_platform(Platform::LinuxRiscv64));
    assert_eq!(u16::from_le_bytes([riscv[18], riscv[19]]), EM_RISCV.0);
    assert_eq!(
        check_for(&riscv, Platform::LinuxArm64)
            .unwrap_err()
            .to_string(),
        "it is built for riscv but the platform needs aarch64 (linux/arm64)"
    );
    let arm = build(&Spec::for_platform(Platform::LinuxArmV7));
    assert_eq!(
        check_for(&arm, Platform::LinuxArm64)
            .unwrap_err()
            .to_string(),
        "it is built for arm but the platform needs aarch64 (linux/arm64)"
    );
    assert_eq!(EM_AARCH64, Platform::LinuxArm64.elf_machine().machine);
}

#[test]
fn a_truncated_32_bit_file_is_malformed_not_a_panic() {
    let full = build(&Spec::for_platform(Platform::Linux386).dynamic(None, &["libc.so"]));
    for len in [20, 52, 60, full.len() - 4] {
        assert!(
            check_for(&full[..len], Platform::Linux386).is_err(),
            "{len}"
        );
    }
}

#[test]
fn the_host_test_binary_is_dynamic() {
    // This test binary is linked against the host's libc.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let host = Platform::host().unwrap();
    match check_for(&me, host) {
        Err(NotStatic::Dynamic { needed, .. }) => {
            assert!(
                needed.iter().any(|n| n.starts_with("libc.so")),
                "{needed:?}"
            )
        }
        other => panic!("expected a dynamic binary, got {other:?}"),
    }
}
