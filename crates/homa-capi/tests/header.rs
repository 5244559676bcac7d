//! The committed header `include/homa.h` is what cbindgen generates from
//! the crate now. `HOMA_CAPI_BLESS=1` rewrites it instead of failing.
#![allow(non_snake_case)]

use std::path::Path;

#[test]
fn header__committed_matches_generated() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = dir.join("include/homa.h");
    if std::env::var_os("HOMA_CAPI_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/homa.h is stale: regenerate it with HOMA_CAPI_BLESS=1 cargo test -p homa-capi --test header\n--- generated:\n{}",
        String::from_utf8_lossy(&generated)
    );
}
