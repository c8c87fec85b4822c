//! Test support shared by the `hostile` tests of the lora-bert crates (not published): the
//! counting allocator that bounds what a loader allocates ([`alloc`]) and the generators that
//! damage valid files ([`mutate`]), and the check that a corpus of nasty files has a case
//! for every file ([`corpus`]).

pub mod alloc;
pub mod corpus;
pub mod mutate;
