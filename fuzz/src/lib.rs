//! Fuzz targets for `rscp-proto`: the checks live in [`checks`], which the stable
//! test `crates/proto/tests/corpus.rs` also includes to replay `fuzz/seeds/`.
pub mod checks;
