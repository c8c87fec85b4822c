//! Test support shared by the `hostile` tests of the lora-bert crates (not published): the
//! counting allocator that bounds what a loader allocates ([`alloc`]) and the generators that
//! damage valid files ([`mutate`]), and the check that a corpus of nasty files has a case
//! for every file ([`corpus`]).

pub mod alloc;
pub mod corpus;
pub mod mutate;

/// The number of cases a `hostile` property runs: `default`, or `PROPTEST_CASES` when it is
/// set, so a long soak (`PROPTEST_CASES=20000 cargo test --release --workspace --test
/// hostile`) needs no edit. (An explicit `cases` in a `ProptestConfig` otherwise hides the
/// variable, which proptest reads only for its defaults.)
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
