use object::elf::{EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC};

use super::*;

/// A minimal little-endian ELF64 image: a header, program headers, and (when
/// asked) an interpreter string and a dynamic section with needed libraries.
/// One PT_LOAD maps the whole file at address 0x10000.
pub(crate) fn elf64(
    e_type: u16,
    machine: u16,
    interp: Option<&str>,
    needed: &[&str],
    dynamic: bool,
) -> Vec<u8> {
    const BASE: u64 = 0x10000;
    let mut phdrs: Vec<(u32, u64, u64)> = Vec::new(); // (type, offset, size)
    let mut tail = Vec::new();
    let n_phdrs = 1 + usize::from(interp.is_some()) + usize::from(dynamic);
    let data_start = 64 + 56 * n_phdrs as u64;
    if let Some(i) = interp {
        let off = data_start + tail.len() as u64;
        tail.extend_from_slice(i.as_bytes());
        tail.push(0);
        phdrs.push((elf::PT_INTERP.0, off, i.len() as u64 + 1));
    }
    if dynamic {
        let strtab_off = data_start + tail.len() as u64;
        let mut name_offsets = Vec::new();
        tail.push(0);
        for n in needed {
            name_offsets.push(tail.len() as u64 - (strtab_off - data_start));
            tail.extend_from_slice(n.as_bytes());
            tail.push(0);
        }
        while tail.len() % 8 != 0 {
            tail.push(0);
        }
        let dyn_off = data_start + tail.len() as u64;
        let mut entries: Vec<(u64, u64)> = name_offsets
            .iter()
            .map(|&o| (elf::DT_NEEDED.0 as u64, o))
            .collect();
        entries.push((elf::DT_STRTAB.0 as u64, BASE + strtab_off));
        entries.push((elf::DT_NULL.0 as u64, 0));
        for (tag, val) in &entries {
            tail.extend_from_slice(&tag.to_le_bytes());
            tail.extend_from_slice(&val.to_le_bytes());
        }
        phdrs.push((elf::PT_DYNAMIC.0, dyn_off, entries.len() as u64 * 16));
    }
    let total = data_start + tail.len() as u64;
    phdrs.insert(0, (elf::PT_LOAD.0, 0, total));

    let mut out = Vec::new();
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&e_type.to_le_bytes());
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&BASE.to_le_bytes()); // e_entry
    out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections at all
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out.extend_from_slice(&(phdrs.len() as u16).to_le_bytes());
    out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    for (p_type, offset, size) in phdrs {
        out.extend_from_slice(&p_type.to_le_bytes());
        out.extend_from_slice(&5u32.to_le_bytes()); // R+X
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(BASE + offset).to_le_bytes()); // vaddr
        out.extend_from_slice(&(BASE + offset).to_le_bytes()); // paddr
        out.extend_from_slice(&size.to_le_bytes()); // filesz
        out.extend_from_slice(&size.to_le_bytes()); // memsz
        out.extend_from_slice(&8u64.to_le_bytes()); // align
    }
    out.extend_from_slice(&tail);
    out
}

#[test]
fn static_executable_passes() {
    let bin = elf64(ET_EXEC.0, EM_X86_64.0, None, &[], false);
    assert_eq!(check_static(&bin, EM_X86_64, "linux/amd64"), Ok(()));
}

#[test]
fn static_pie_passes() {
    // ET_DYN with a dynamic section for self-relocation, but nothing needed.
    let bin = elf64(ET_DYN.0, EM_X86_64.0, None, &[], true);
    assert_eq!(check_static(&bin, EM_X86_64, "linux/amd64"), Ok(()));
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
    let err = check_static(&bin, EM_X86_64, "linux/amd64").unwrap_err();
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
    let err = check_static(&bin, EM_X86_64, "linux/amd64").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("libssl.so.3") && msg.contains("crash"),
        "{msg}"
    );
}

#[test]
fn wrong_machine_is_refused() {
    let bin = elf64(ET_EXEC.0, EM_X86_64.0, None, &[], false);
    let err = check_static(&bin, EM_AARCH64, "linux/arm64").unwrap_err();
    assert_eq!(
        err.to_string(),
        "it is built for x86_64 but the platform needs aarch64 (linux/arm64)"
    );
}

#[test]
fn non_executables_and_non_elf_are_refused() {
    let mut obj = elf64(ET_EXEC.0, EM_X86_64.0, None, &[], false);
    obj[16] = 1; // ET_REL
    assert!(matches!(
        check_static(&obj, EM_X86_64, "linux/amd64"),
        Err(NotStatic::NotExecutable(_))
    ));
    assert!(matches!(
        check_static(b"#!/bin/sh\necho hi\n", EM_X86_64, "linux/amd64"),
        Err(NotStatic::NotElf(_))
    ));
    let mut elf32 = elf64(ET_EXEC.0, EM_X86_64.0, None, &[], false);
    elf32[4] = 1; // ELFCLASS32
    assert!(check_static(&elf32, EM_X86_64, "linux/amd64").is_err());
}

#[test]
fn the_host_test_binary_is_dynamic() {
    // This test binary is linked against the host's libc.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let host = crate::platform::Platform::host().unwrap();
    match check_static(&me, host.elf_machine(), &host.to_string()) {
        Err(NotStatic::Dynamic { needed, .. }) => {
            assert!(
                needed.iter().any(|n| n.starts_with("libc.so")),
                "{needed:?}"
            )
        }
        other => panic!("expected a dynamic binary, got {other:?}"),
    }
}
