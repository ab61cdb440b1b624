//! numpy arrays in and out of the binding: shape and dtype checks that name
//! the argument, and every search error as `ValueError`.

use std::borrow::Cow;

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::SearchError;

pub(super) fn to_py(e: SearchError) -> PyErr {
    PyValueError::new_err(e.0)
}

pub(super) fn describe(obj: &Bound<'_, PyAny>) -> String {
    let dtype = obj.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| "no dtype".into());
    let shape = obj.getattr("shape").map(|s| s.to_string()).unwrap_or_else(|_| "no shape".into());
    format!("{} with dtype {dtype} and shape {shape}", obj.get_type().name().map(|n| n.to_string()).unwrap_or_default())
}

pub(super) fn array2<'py, T: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    dtype: &str,
    rows: usize,
    cols: usize,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    let arr: PyReadonlyArray2<'py, T> = obj.extract().map_err(|_| {
        PyValueError::new_err(format!("{name} must be a 2-d numpy array of {dtype}, got {}", describe(obj)))
    })?;
    if arr.shape() != [rows, cols] {
        return Err(PyValueError::new_err(format!(
            "{name} must have shape ({rows}, {cols}), got {:?}",
            arr.shape()
        )));
    }
    Ok(arr)
}

pub(super) fn array1<'py, T: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    dtype: &str,
    len: usize,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    let arr: PyReadonlyArray1<'py, T> = obj.extract().map_err(|_| {
        PyValueError::new_err(format!("{name} must be a 1-d numpy array of {dtype}, got {}", describe(obj)))
    })?;
    if arr.len() != len {
        return Err(PyValueError::new_err(format!("{name} must have shape ({len},), got {:?}", arr.shape())));
    }
    Ok(arr)
}

/// The array's elements in row-major order: borrowed when contiguous, copied
/// when strided (a column slice of a network's output, say).
pub(super) fn elems<'a, T: numpy::Element + Copy, D: numpy::ndarray::Dimension>(
    arr: &'a numpy::PyReadonlyArray<'_, T, D>,
) -> Cow<'a, [T]> {
    match arr.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(arr.as_array().iter().copied().collect()),
    }
}
