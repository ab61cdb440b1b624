//! Batched stochastic MuZero search. The search is plain Rust in [`search`];
//! the optional `python` feature adds the PyO3 bindings in `python`.

pub mod positions;
pub mod search;

#[cfg(feature = "python")]
mod python;
