//! Batched stochastic MuZero search. The search is plain Rust; the optional
//! `python` feature adds the PyO3 bindings in `python`.
//!
//! Modules, bottom to top (each uses only modules listed before it):
//! * [`error`]: `SearchError`, the one error.
//! * [`positions`]: the trading position rules (which action leads where).
//! * [`config`]: `SearchConfig` and `GumbelConfig`, every value from the caller.
//! * [`tree`]: the `Forest` arena of B trees, its sentinels and node storage.
//! * `action_selection`: pUCT, chance outcomes, the Gumbel interior rule and
//!   completed Q; [`seq_halving`]: Sequential Halving's schedule;
//!   `gumbel`: the Gumbel root (top-k with Sequential Halving, the acted action).
//! * [`roots`]: `reset`, the root inputs and root noise; [`search`]: the
//!   select / expand / backup protocol; `results`: reading a finished search.
//! * `python`: the binding, on top of all (the config object read field by
//!   field in `python_config.rs`, numpy checks in `python_arrays.rs`).

mod action_selection;
pub mod config;
pub mod error;
mod gumbel;
pub mod positions;
mod results;
pub mod roots;
pub mod search;
pub mod seq_halving;
pub mod tree;

#[cfg(feature = "python")]
mod python;

pub use config::{GumbelConfig, SearchConfig};
pub use error::SearchError;
pub use roots::RootInputs;
pub use tree::Forest;
