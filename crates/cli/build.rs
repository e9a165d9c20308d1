//! Links the binary with packed relative relocations (`DT_RELR`): a
//! position-independent executable of this size carries ~70,000 relative
//! relocations, and the dynamic loader reads their 1.7 MB table at every
//! start, which stays resident for the whole run. Packed, the table is a
//! few kilobytes (bench/README.md, "Memory"). Needs GNU ld ≥ 2.38 to link
//! and glibc ≥ 2.36 to run, which Debian 12 has (docs/install.md).
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
