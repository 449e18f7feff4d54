//! Hand-built ELF files of any class, byte order and machine: static,
//! static-pie, or linked through a loader against shared libraries.

use crate::elf::{
    Class, DT_NEEDED, DT_NULL, DT_STRTAB, ET_DYN, ET_EXEC, Endian, PT_DYNAMIC, PT_INTERP, PT_LOAD,
};
use crate::platform::Platform;

/// The shape of a hand-built ELF file.
#[derive(Clone)]
pub struct Spec<'a> {
    pub class: Class,
    pub endian: Endian,
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
    pub fn for_platform(platform: Platform) -> Spec<'a> {
        let m = platform.elf_machine();
        Spec {
            class: m.class,
            endian: m.endian,
            e_type: ET_EXEC,
            machine: m.machine.0,
            interp: None,
            needed: &[],
            dynamic: false,
        }
    }

    /// The same binary linked against shared libraries through a loader.
    pub fn dynamic(self, interp: Option<&'a str>, needed: &'a [&'a str]) -> Spec<'a> {
        Spec {
            e_type: ET_DYN,
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
pub fn build(spec: &Spec<'_>) -> Vec<u8> {
    const BASE: u64 = 0x10000;
    let wide = spec.class == Class::Elf64;
    let (ehsize, phentsize, dynsize): (u64, u64, u64) =
        if wide { (64, 56, 16) } else { (52, 32, 8) };
    let mut phdrs: Vec<(u32, u64, u64)> = Vec::new(); // (type, offset, size)
    let mut tail = Writer {
        out: Vec::new(),
        big: spec.endian == Endian::Big,
        wide,
    };
    let n_phdrs = 1 + usize::from(spec.interp.is_some()) + usize::from(spec.dynamic);
    let data_start = ehsize + phentsize * n_phdrs as u64;
    if let Some(i) = spec.interp {
        let off = data_start + tail.out.len() as u64;
        tail.out.extend_from_slice(i.as_bytes());
        tail.out.push(0);
        phdrs.push((PT_INTERP, off, i.len() as u64 + 1));
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
        let mut entries: Vec<(u64, u64)> = name_offsets.iter().map(|&o| (DT_NEEDED, o)).collect();
        entries.push((DT_STRTAB, BASE + strtab_off));
        entries.push((DT_NULL, 0));
        for &(tag, val) in &entries {
            tail.word(tag);
            tail.word(val);
        }
        phdrs.push((PT_DYNAMIC, dyn_off, entries.len() as u64 * dynsize));
    }
    let total = data_start + tail.out.len() as u64;
    phdrs.insert(0, (PT_LOAD, 0, total));

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
pub fn elf64(
    e_type: u16,
    machine: u16,
    interp: Option<&str>,
    needed: &[&str],
    dynamic: bool,
) -> Vec<u8> {
    build(&Spec {
        class: Class::Elf64,
        endian: Endian::Little,
        e_type,
        machine,
        interp,
        needed,
        dynamic,
    })
}
