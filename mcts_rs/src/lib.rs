//! Batched stochastic MuZero search. The search is plain Rust: the tree and
//! its select / expand / backup protocol in [`search`], reading a finished
//! search in `results`, the trading position rules in [`positions`]. The
//! optional `python` feature adds the PyO3 bindings in `python`.

pub mod gumbel;
pub mod positions;
mod results;
pub mod search;

#[cfg(feature = "python")]
mod python;
