//! Tests of the rule language through the public API, against an in-memory store.
// Test helpers outside `#[test]` fns are not covered by `allow-unwrap-in-tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aggregate;
mod check;
mod common;
mod diagnostics;
mod ops;
mod packs;
mod results;
mod sandbox;
mod testing;
mod window;
