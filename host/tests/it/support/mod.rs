//! Helpers shared by the test areas: `common` (the local stack, topics,
//! tables, host processes), and those of a few areas each.

pub mod audit;
pub mod common;
pub mod offsets;
pub mod ops;
pub mod rewind;
