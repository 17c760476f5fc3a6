//! The binary must keep libtorch_cuda.so as a NEEDED entry (see build.rs),
//! otherwise libtorch never registers CUDA and no GPU is ever seen.

use object::read::elf::{Dyn, ElfFile64, FileHeader};
use object::Endianness;

#[test]
fn binary_needs_libtorch_cuda() {
    let path = env!("CARGO_BIN_EXE_harness");
    let data = std::fs::read(path).unwrap();
    let elf = ElfFile64::<Endianness>::parse(&*data).expect("harness is not an ELF64 file");
    let endian = elf.endian();
    let header = elf.elf_header();
    let sections = header.sections(endian, &*data).unwrap();
    let (dynamic, link) = sections
        .dynamic(endian, &*data)
        .unwrap()
        .expect("no dynamic section");
    let strings = sections.strings(endian, &*data, link).unwrap();
    let mut needed = Vec::new();
    for d in dynamic {
        if d.d_tag(endian) as u32 == object::elf::DT_NEEDED {
            let name = d.string(endian, strings).unwrap();
            needed.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    assert!(
        needed.iter().any(|n| n == "libtorch_cuda.so"),
        "libtorch_cuda.so not in NEEDED: {needed:?}"
    );
    assert!(
        needed.iter().any(|n| n == "libtorch_cpu.so"),
        "NEEDED: {needed:?}"
    );
}
