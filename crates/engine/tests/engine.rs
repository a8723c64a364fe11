//! Integration tests of `rscp-engine`: a peer played byte by byte over in-memory
//! pipes (hostile and well-behaved), spec §10 vectors both ways, local failures, and
//! interop with the real OpenSSH `scp -t` / `scp -f`.

#[path = "engine/common.rs"]
mod common;
#[path = "engine/failures.rs"]
mod failures;
#[path = "engine/hostile.rs"]
mod hostile;
#[path = "engine/interop.rs"]
mod interop;
#[path = "engine/source_side.rs"]
mod source_side;
#[path = "engine/vectors.rs"]
mod vectors;
