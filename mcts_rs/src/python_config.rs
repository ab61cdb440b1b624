//! The search's settings from Python: `shared.config.SearchConfig` read
//! field by field under the Python names, and the position table.

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use super::arrays::{describe, elems, to_py};
use crate::config::{GumbelConfig, SearchConfig};
use crate::positions::PositionRules;

/// One attribute of the config object, under the Python field's own name.
fn attr<'py>(config: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    config.getattr(name).map_err(|_| {
        PyValueError::new_err(format!(
            "config has no attribute {name:?}: BatchedSearch reads every field of shared.config.SearchConfig \
             from its config argument (got {})",
            type_name(config)
        ))
    })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
}

fn mistyped(name: &str, expected: &str, value: &Bound<'_, PyAny>) -> PyErr {
    let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
    PyValueError::new_err(format!("config.{name} must be {expected}, got {shown} ({})", type_name(value)))
}

fn int_attr(config: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    let value = attr(config, name)?;
    if value.is_instance_of::<PyBool>() {
        return Err(mistyped(name, "a non-negative int", &value));
    }
    value.extract().map_err(|_| mistyped(name, "a non-negative int", &value))
}

fn float_attr(config: &Bound<'_, PyAny>, name: &str) -> PyResult<f64> {
    let value = attr(config, name)?;
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyString>() {
        return Err(mistyped(name, "a float", &value));
    }
    value.extract().map_err(|_| mistyped(name, "a float", &value))
}

fn bool_attr(config: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
    let value = attr(config, name)?;
    value.extract().map_err(|_| mistyped(name, "a bool", &value))
}

fn str_attr(config: &Bound<'_, PyAny>, name: &str) -> PyResult<String> {
    let value = attr(config, name)?;
    value.extract().map_err(|_| mistyped(name, "a str", &value))
}

/// The Rust search settings from `shared.config.SearchConfig`'s fields, every
/// one read (the Gumbel ones under pUCT too, so a missing one never goes
/// unnoticed), the network shape beside them; no position rules yet.
pub(super) fn search_config(
    config: &Bound<'_, PyAny>,
    num_actions: usize,
    num_outcomes: usize,
    embedding_dim: usize,
) -> PyResult<SearchConfig> {
    let simulations = int_attr(config, "simulations")?;
    let discount = float_attr(config, "discount")?;
    let pb_c_init = float_attr(config, "pb_c_init")?;
    let pb_c_base = float_attr(config, "pb_c_base")?;
    let dirichlet_alpha = float_attr(config, "dirichlet_alpha")?;
    let dirichlet_fraction = float_attr(config, "dirichlet_fraction")?;
    let sample_outcomes = bool_attr(config, "sample_outcomes")?;
    let root_selection = str_attr(config, "root_selection")?;
    let gumbel = GumbelConfig {
        max_considered_actions: int_attr(config, "max_considered_actions")?,
        gumbel_scale: float_attr(config, "gumbel_scale")?,
        gumbel_value_scale: float_attr(config, "gumbel_value_scale")?,
        gumbel_maxvisit_init: float_attr(config, "gumbel_maxvisit_init")?,
    };
    let gumbel = match root_selection.as_str() {
        "puct" => None,
        "gumbel" => Some(gumbel),
        other => {
            return Err(PyValueError::new_err(format!(
                "config.root_selection must be 'puct' or 'gumbel', got {other:?}"
            )))
        }
    };
    Ok(SearchConfig {
        num_actions,
        num_outcomes,
        embedding_dim,
        simulations,
        discount,
        pb_c_init,
        pb_c_base,
        dirichlet_alpha,
        dirichlet_fraction,
        sample_outcomes,
        positions: None,
        gumbel,
    })
}

/// The action space's table [A, P]: the position after each action from each
/// position, -1 where illegal.
pub(super) fn position_rules(obj: &Bound<'_, PyAny>, num_actions: usize) -> PyResult<PositionRules> {
    let table: PyReadonlyArray2<i64> = obj.extract().map_err(|_| {
        PyValueError::new_err(format!("position_transitions must be a 2-d numpy array of int64, got {}", describe(obj)))
    })?;
    let [rows, cols] = [table.shape()[0], table.shape()[1]];
    if rows != num_actions {
        return Err(PyValueError::new_err(format!(
            "position_transitions must have one row per action ({num_actions}), got {rows}"
        )));
    }
    PositionRules::new(num_actions, cols, elems(&table).into_owned()).map_err(to_py)
}
