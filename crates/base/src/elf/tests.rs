use super::*;
use crate::platform::Platform;
use crate::testkit::elf::{Spec, build, elf64};

fn check_for(bin: &[u8], platform: Platform) -> Result<(), NotStatic> {
    check_static(bin, platform.elf_machine(), &platform.to_string())
}

#[test]
fn static_executable_passes() {
    let bin = elf64(ET_EXEC, EM_X86_64.0, None, &[], false);
    assert_eq!(check_for(&bin, Platform::LinuxAmd64), Ok(()));
}

#[test]
fn static_pie_passes() {
    // ET_DYN with a dynamic section for self-relocation, but nothing needed.
    let bin = elf64(ET_DYN, EM_X86_64.0, None, &[], true);
    assert_eq!(check_for(&bin, Platform::LinuxAmd64), Ok(()));
}

#[test]
fn dynamic_executable_names_loader_and_libraries() {
    let bin = elf64(
        ET_DYN,
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
    let bin = elf64(ET_DYN, EM_X86_64.0, None, &["libssl.so.3"], true);
    let err = check_for(&bin, Platform::LinuxAmd64).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("libssl.so.3") && msg.contains("crash"),
        "{msg}"
    );
}

#[test]
fn wrong_machine_is_refused() {
    let bin = elf64(ET_EXEC, EM_X86_64.0, None, &[], false);
    let err = check_for(&bin, Platform::LinuxArm64).unwrap_err();
    assert_eq!(
        err.to_string(),
        "it is built for x86_64 but the platform needs aarch64 (linux/arm64)"
    );
}

#[test]
fn non_executables_and_non_elf_are_refused() {
    let obj = elf64(ET_REL, EM_X86_64.0, None, &[], false);
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
            e_type: ET_DYN,
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
        endian: Endian::Big,
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
            endian: Endian::Big,
            ..Spec::for_platform(Platform::LinuxPpc64le)
        }
        .dynamic(Some("/lib/ld64.so.1"), &["libc.so.6"]),
    );
    let expected = ElfMachine {
        endian: Endian::Big,
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

/// Writes `v` at `at` in the file's byte order and class width.
fn put(bin: &mut [u8], at: usize, v: u64, len: usize, big: bool) {
    let bytes = v.to_le_bytes();
    for i in 0..len {
        bin[at + i] = if big { bytes[len - 1 - i] } else { bytes[i] };
    }
}

fn malformed_reason(bin: &[u8], p: Platform) -> String {
    match check_for(bin, p) {
        Err(NotStatic::Malformed(why)) => why,
        other => panic!("expected a malformed file, got {other:?}"),
    }
}

#[test]
fn every_truncation_of_every_shape_is_an_error_not_a_panic() {
    for p in Platform::ALL {
        let spec = Spec::for_platform(p).dynamic(Some("/lib/ld.so"), &["libc.so", "libm.so"]);
        for endian in [Endian::Little, Endian::Big] {
            let expected = ElfMachine {
                endian,
                ..p.elf_machine()
            };
            let full = build(&Spec {
                endian,
                ..spec.clone()
            });
            for len in 0..full.len() {
                let got = check_static(&full[..len], expected, "p");
                assert!(
                    matches!(got, Err(NotStatic::Malformed(_) | NotStatic::NotElf(_))),
                    "{p} {endian:?} cut at {len}: {got:?}"
                );
            }
            assert!(matches!(
                check_static(&full, expected, "p"),
                Err(NotStatic::Dynamic { .. })
            ));
        }
    }
}

#[test]
fn corrupt_header_fields_are_named() {
    let p = Platform::LinuxAmd64;
    let good = build(&Spec::for_platform(p));
    let mut class = good.clone();
    class[4] = 3;
    assert!(malformed_reason(&class, p).contains("class is 3"));
    let mut order = good.clone();
    order[5] = 0;
    assert!(malformed_reason(&order, p).contains("byte order is 0"));
    let mut version = good.clone();
    version[6] = 2;
    assert!(malformed_reason(&version, p).contains("version is 2"));
    // e_phentsize (64-bit: offset 54) must be the class's entry size.
    let mut entsize = good.clone();
    put(&mut entsize, 54, 32, 2, false);
    assert!(malformed_reason(&entsize, p).contains("32 bytes each"));
    // No program headers at all: no kernel runs it, so it proves nothing.
    let mut none = good.clone();
    put(&mut none, 56, 0, 2, false);
    assert!(malformed_reason(&none, p).contains("no program headers"));
    let mut no_offset = good.clone();
    put(&mut no_offset, 32, 0, 8, false);
    assert!(malformed_reason(&no_offset, p).contains("no program headers"));
}

#[test]
fn huge_counts_and_offsets_are_refused_without_reading_them() {
    let p = Platform::LinuxAmd64;
    let good = build(&Spec::for_platform(p));
    // e_phnum 0xffff: 3.6 MB of headers, more than Linux reads.
    let mut count = good.clone();
    put(&mut count, 56, 0xffff, 2, false);
    assert!(malformed_reason(&count, p).contains("more than the 65536"));
    // A count Linux would read, but more than the file holds.
    let mut short = good.clone();
    put(&mut short, 56, 1000, 2, false);
    assert!(malformed_reason(&short, p).contains("outside the file"));
    // e_phoff at the very end of the address space: no overflow.
    for phoff in [u64::MAX, u64::MAX - 10, 1 << 63] {
        let mut far = good.clone();
        put(&mut far, 32, phoff, 8, false);
        assert!(malformed_reason(&far, p).contains("outside the file"));
    }
    // The same in a 32-bit file.
    let p32 = Platform::Linux386;
    let mut far = build(&Spec::for_platform(p32));
    put(&mut far, 28, u64::from(u32::MAX), 4, false);
    assert!(malformed_reason(&far, p32).contains("outside the file"));
}

/// The offset of program header `i` of a 64-bit little-endian fixture.
fn phdr(i: usize) -> usize {
    64 + 56 * i
}

#[test]
fn segments_outside_the_file_are_malformed() {
    let p = Platform::LinuxAmd64;
    // Program headers: PT_LOAD, PT_INTERP, PT_DYNAMIC.
    let good = build(&Spec::for_platform(p).dynamic(Some("/lib/ld.so"), &["libc.so"]));
    for (field, value) in [(8, u64::MAX), (8, 1 << 40), (32, u64::MAX), (32, 1 << 20)] {
        let mut interp = good.clone();
        put(&mut interp, phdr(1) + field, value, 8, false);
        assert!(
            malformed_reason(&interp, p).contains("PT_INTERP"),
            "{field} {value}"
        );
        let mut dynamic = good.clone();
        put(&mut dynamic, phdr(2) + field, value, 8, false);
        assert!(
            malformed_reason(&dynamic, p).contains("PT_DYNAMIC"),
            "{field} {value}"
        );
    }
    // A dynamic segment that is not a whole number of entries.
    let mut ragged = good.clone();
    let size = u64::from_le_bytes(good[phdr(2) + 32..phdr(2) + 40].try_into().unwrap());
    put(&mut ragged, phdr(2) + 32, size - 3, 8, false);
    assert!(malformed_reason(&ragged, p).contains("whole number"));
}

#[test]
fn a_second_dynamic_segment_is_refused() {
    let p = Platform::LinuxAmd64;
    let mut bin = build(&Spec::for_platform(p).dynamic(None, &[]));
    // Turn the PT_LOAD into a second PT_DYNAMIC covering the whole file.
    put(&mut bin, phdr(0), u64::from(PT_DYNAMIC), 4, false);
    assert!(malformed_reason(&bin, p).contains("more than one PT_DYNAMIC"));
}

#[test]
fn overlapping_and_unmapped_string_tables_still_name_each_library() {
    let p = Platform::LinuxAmd64;
    let good = build(&Spec::for_platform(p).dynamic(None, &["libc.so"]));
    // The dynamic segment made to overlap the program headers: its entries
    // are then garbage, but read within bounds, and the file is refused or
    // accepted by what the entries say, never by a panic.
    let mut overlap = good.clone();
    put(&mut overlap, phdr(1) + 8, 64, 8, false);
    put(&mut overlap, phdr(1) + 32, 112, 8, false);
    let _ = check_for(&overlap, p);
    // DT_STRTAB pointing outside every PT_LOAD: the library is still
    // reported, by its offset.
    let mut unmapped = good.clone();
    put(&mut unmapped, phdr(0) + 32, 8, 8, false);
    match check_for(&unmapped, p) {
        Err(NotStatic::Dynamic { needed, .. }) => {
            assert_eq!(needed, ["<unreadable name at offset 1>"]);
        }
        other => panic!("{other:?}"),
    }
    // A PT_LOAD whose address range wraps around: skipped, not overflowed.
    let mut wrap = good;
    put(&mut wrap, phdr(0) + 16, u64::MAX - 4, 8, false);
    assert!(matches!(
        check_for(&wrap, p),
        Err(NotStatic::Dynamic { .. })
    ));
}

#[test]
fn random_damage_never_panics() {
    let p = Platform::LinuxAmd64;
    let good = build(&Spec::for_platform(p).dynamic(Some("/lib/ld.so"), &["libc.so", "libz.so"]));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut bin = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bin.len() as u64) as usize;
            bin[at] = next() as u8;
        }
        let _ = check_for(&bin, p);
        let _ = section(&bin, ".dep-v0");
    }
}

#[test]
fn not_elf_files_are_named_by_what_they_look_like() {
    let p = Platform::LinuxAmd64;
    for (bytes, what) in [
        (&b"#!/bin/sh\n"[..], "a script"),
        (b"!<arch>\nfoo", "an ar archive"),
        (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01", "a Mach-O file"),
        (b"MZ\x90\x00", "a PE/DOS executable"),
        (b"\0asm\x01\0\0\0", "a WebAssembly module"),
        (b"", "unrecognised format"),
        (b"\x7fEL", "unrecognised format"),
    ] {
        assert_eq!(check_for(bytes, p), Err(NotStatic::NotElf(what.to_owned())));
    }
    assert_eq!(
        check_for(&elf64(ET_REL, EM_X86_64.0, None, &[], false), p),
        Err(NotStatic::NotExecutable("ET_REL".into()))
    );
}

/// An ELF64 file with the given sections after the header, and a section
/// header table naming them (`.shstrtab` last).
fn with_sections(sections: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut bin = elf64(ET_EXEC, EM_X86_64.0, None, &[], false);
    let mut names = vec![0u8];
    let mut headers = vec![[0u64; 4]]; // name, type, offset, size
    for &(name, kind, data) in sections.iter().chain([(".shstrtab", 3, &[][..])].iter()) {
        let name_at = names.len() as u64;
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        headers.push([
            name_at,
            u64::from(kind),
            bin.len() as u64,
            data.len() as u64,
        ]);
        bin.extend_from_slice(data);
    }
    let last = headers.len() - 1;
    headers[last][2] = bin.len() as u64;
    headers[last][3] = names.len() as u64;
    bin.extend_from_slice(&names);
    let shoff = bin.len() as u64;
    for [name, kind, offset, size] in &headers {
        let mut h = [0u8; 64];
        put(&mut h, 0, *name, 4, false);
        put(&mut h, 4, *kind, 4, false);
        put(&mut h, 24, *offset, 8, false);
        put(&mut h, 32, *size, 8, false);
        bin.extend_from_slice(&h);
    }
    put(&mut bin, 40, shoff, 8, false);
    put(&mut bin, 58, 64, 2, false);
    put(&mut bin, 60, headers.len() as u64, 2, false);
    put(&mut bin, 62, last as u64, 2, false);
    bin
}

#[test]
fn sections_are_found_by_name_and_damage_finds_nothing() {
    let bin = with_sections(&[
        (".text", 1, b"code"),
        (".dep-v0", 1, b"list"),
        (".bss", 8, b""),
    ]);
    assert_eq!(section(&bin, ".dep-v0"), Some(&b"list"[..]));
    assert_eq!(section(&bin, ".text"), Some(&b"code"[..]));
    assert_eq!(section(&bin, ".bss"), Some(&b""[..]));
    assert_eq!(section(&bin, ".dep"), None);
    assert_eq!(section(&bin, ".missing"), None);
    // Stripped of section headers: nothing to find, and no error.
    let mut stripped = bin.clone();
    put(&mut stripped, 40, 0, 8, false);
    assert_eq!(section(&stripped, ".dep-v0"), None);
    let shoff = u64::from_le_bytes(bin[40..48].try_into().unwrap()) as usize;
    for (at, len, value) in [
        (60, 2, 0xffff),                    // e_shnum past the end of the file
        (62, 2, 40),                        // e_shstrndx past the table
        (58, 2, 40),                        // the 32-bit entry size in a 64-bit file
        (40, 8, u64::MAX),                  // e_shoff
        (shoff + 64 * 2 + 24, 8, u64::MAX), // .dep-v0's offset
        (shoff + 64 * 2 + 32, 8, 1 << 40),  // .dep-v0's size
        (shoff + 64 * 2, 4, 1 << 30),       // .dep-v0's name
    ] {
        let mut bad = bin.clone();
        put(&mut bad, at, value, len, false);
        assert_eq!(section(&bad, ".dep-v0"), None, "{at}");
    }
    // Extended numbering: e_shnum 0 and the count in section 0's sh_size;
    // SHN_XINDEX and the names' index in section 0's sh_link.
    let mut extended = bin.clone();
    let count = u64::from(u16::from_le_bytes([bin[60], bin[61]]));
    let names = u64::from(u16::from_le_bytes([bin[62], bin[63]]));
    put(&mut extended, 60, 0, 2, false);
    put(&mut extended, 62, 0xffff, 2, false);
    put(&mut extended, shoff + 32, count, 8, false);
    put(&mut extended, shoff + 40, names, 4, false);
    assert_eq!(section(&extended, ".dep-v0"), Some(&b"list"[..]));
    // A count in section 0 far beyond the file is refused, not looped over.
    put(&mut extended, shoff + 32, u64::MAX / 64, 8, false);
    assert_eq!(section(&extended, ".dep-v0"), None);
}
