//! Thin PyO3 layer: converts numpy arrays, releases the GIL around the search
//! and maps every error to `ValueError`. No search logic lives here.

#[path = "python_arrays.rs"]
mod arrays;
#[path = "python_config.rs"]
mod config;

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use self::arrays::{array1, array2, elems, to_py};
use self::config::{position_rules, search_config};
use crate::error::SearchError;
use crate::roots::RootInputs;
use crate::search::all_finite;
use crate::tree::{Forest, LeafKind};

/// Batched stochastic MuZero search over `batch_size` roots. See the package
/// docstring and `__init__.pyi` for the protocol.
#[pyclass(name = "BatchedSearch", module = "mcts_rs._mcts_rs")]
pub struct PyBatchedSearch {
    forest: Forest,
    // Leaf buffers, allocated once; rows [:n] are valid after select().
    afterstate_roots: Py<PyArray1<i64>>,
    afterstate_nodes: Py<PyArray1<i64>>,
    afterstate_actions: Py<PyArray1<i64>>,
    afterstate_inputs: Py<PyArray2<f32>>,
    state_roots: Py<PyArray1<i64>>,
    state_nodes: Py<PyArray1<i64>>,
    state_outcomes: Py<PyArray1<i64>>,
    state_inputs: Py<PyArray2<f32>>,
    // Which roots the rows of each leaf kind belong to (our own copy, so a
    // caller writing into the numpy buffers cannot misroute an answer).
    afterstate_order: Vec<usize>,
    state_order: Vec<usize>,
    afterstate_answered: bool,
    state_answered: bool,
}

/// Everything select() writes, as plain slices so it can run without the GIL.
struct LeafBuffers<'a> {
    as_roots: &'a mut [i64],
    as_nodes: &'a mut [i64],
    as_actions: &'a mut [i64],
    as_inputs: &'a mut [f32],
    st_roots: &'a mut [i64],
    st_nodes: &'a mut [i64],
    st_outcomes: &'a mut [i64],
    st_inputs: &'a mut [f32],
}

fn select_into(
    forest: &mut Forest,
    out: LeafBuffers,
    as_order: &mut Vec<usize>,
    st_order: &mut Vec<usize>,
) -> Result<(), SearchError> {
    forest.select()?;
    let d = forest.cfg.embedding_dim;
    as_order.clear();
    st_order.clear();
    for b in 0..forest.batch_size {
        let Some(leaf) = forest.leaves()[b] else { continue };
        if !forest.requested(b) {
            continue;
        }
        let emb = forest.embedding(b, leaf.parent);
        match leaf.kind {
            LeafKind::Afterstate => {
                let i = as_order.len();
                out.as_roots[i] = b as i64;
                out.as_nodes[i] = leaf.parent as i64;
                out.as_actions[i] = leaf.index as i64;
                out.as_inputs[i * d..(i + 1) * d].copy_from_slice(emb);
                as_order.push(b);
            }
            LeafKind::State => {
                let i = st_order.len();
                out.st_roots[i] = b as i64;
                out.st_nodes[i] = leaf.parent as i64;
                out.st_outcomes[i] = leaf.index as i64;
                out.st_inputs[i * d..(i + 1) * d].copy_from_slice(emb);
                st_order.push(b);
            }
        }
    }
    Ok(())
}

#[pymethods]
impl PyBatchedSearch {
    /// `config` is a `shared.config.SearchConfig` (any object with its
    /// fields): every field is read by attribute under its own name, none
    /// has a default here. The shape of the networks comes separately.
    #[new]
    #[pyo3(signature = (batch_size, config, *, num_actions, num_outcomes, embedding_dim, position_transitions=None))]
    fn new(
        py: Python<'_>,
        batch_size: usize,
        config: &Bound<'_, PyAny>,
        num_actions: usize,
        num_outcomes: usize,
        embedding_dim: usize,
        position_transitions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut cfg = search_config(config, num_actions, num_outcomes, embedding_dim)?;
        cfg.positions = position_transitions.map(|t| position_rules(t, num_actions)).transpose()?;
        let forest = Forest::new(batch_size, cfg).map_err(to_py)?;
        let ints = || PyArray1::<i64>::zeros(py, batch_size, false).unbind();
        let floats = || PyArray2::<f32>::zeros(py, [batch_size, embedding_dim], false).unbind();
        Ok(PyBatchedSearch {
            forest,
            afterstate_roots: ints(),
            afterstate_nodes: ints(),
            afterstate_actions: ints(),
            afterstate_inputs: floats(),
            state_roots: ints(),
            state_nodes: ints(),
            state_outcomes: ints(),
            state_inputs: floats(),
            afterstate_order: Vec::with_capacity(batch_size),
            state_order: Vec::with_capacity(batch_size),
            afterstate_answered: true,
            state_answered: true,
        })
    }

    #[getter]
    fn batch_size(&self) -> usize {
        self.forest.batch_size
    }
    #[getter]
    fn num_actions(&self) -> usize {
        self.forest.cfg.num_actions
    }
    #[getter]
    fn num_outcomes(&self) -> usize {
        self.forest.cfg.num_outcomes
    }
    #[getter]
    fn embedding_dim(&self) -> usize {
        self.forest.cfg.embedding_dim
    }
    /// The config's simulations: the most a search may run.
    #[getter]
    fn simulations(&self) -> usize {
        self.forest.cfg.simulations
    }
    /// Simulations started by the root that started the fewest.
    #[getter]
    fn simulations_started(&self) -> usize {
        self.forest.simulations_started()
    }
    #[getter]
    fn afterstate_roots(&self, py: Python<'_>) -> Py<PyArray1<i64>> {
        self.afterstate_roots.clone_ref(py)
    }
    #[getter]
    fn afterstate_nodes(&self, py: Python<'_>) -> Py<PyArray1<i64>> {
        self.afterstate_nodes.clone_ref(py)
    }
    #[getter]
    fn afterstate_actions(&self, py: Python<'_>) -> Py<PyArray1<i64>> {
        self.afterstate_actions.clone_ref(py)
    }
    #[getter]
    fn afterstate_inputs(&self, py: Python<'_>) -> Py<PyArray2<f32>> {
        self.afterstate_inputs.clone_ref(py)
    }
    #[getter]
    fn state_roots(&self, py: Python<'_>) -> Py<PyArray1<i64>> {
        self.state_roots.clone_ref(py)
    }
    #[getter]
    fn state_nodes(&self, py: Python<'_>) -> Py<PyArray1<i64>> {
        self.state_nodes.clone_ref(py)
    }
    #[getter]
    fn state_outcomes(&self, py: Python<'_>) -> Py<PyArray1<i64>> {
        self.state_outcomes.clone_ref(py)
    }
    #[getter]
    fn state_inputs(&self, py: Python<'_>) -> Py<PyArray2<f32>> {
        self.state_inputs.clone_ref(py)
    }

    #[pyo3(signature = (root_embeddings, root_priors, root_values, legal_mask, seeds, *, simulations_this_search=None, add_noise=false,
                        root_positions=None, gumbel=None))]
    #[allow(clippy::too_many_arguments)]
    fn reset(
        &mut self,
        py: Python<'_>,
        root_embeddings: &Bound<'_, PyAny>,
        root_priors: &Bound<'_, PyAny>,
        root_values: &Bound<'_, PyAny>,
        legal_mask: &Bound<'_, PyAny>,
        seeds: &Bound<'_, PyAny>,
        simulations_this_search: Option<usize>,
        add_noise: bool,
        root_positions: Option<&Bound<'_, PyAny>>,
        gumbel: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (b, a, d) = (self.forest.batch_size, self.forest.cfg.num_actions, self.forest.cfg.embedding_dim);
        let emb = array2::<f32>(root_embeddings, "root_embeddings", "float32", b, d)?;
        let priors = array2::<f32>(root_priors, "root_priors", "float32", b, a)?;
        let values = array1::<f32>(root_values, "root_values", "float32", b)?;
        let legal = array2::<bool>(legal_mask, "legal_mask", "bool", b, a)?;
        let seeds = array1::<u64>(seeds, "seeds", "uint64", b)?;
        let positions = root_positions.map(|p| array1::<i64>(p, "root_positions", "int64", b)).transpose()?;
        let (emb, priors, values, legal, seeds) = (elems(&emb), elems(&priors), elems(&values), elems(&legal), elems(&seeds));
        let positions = positions.as_ref().map(elems);
        let gumbel = gumbel.map(|g| array2::<f32>(g, "gumbel", "float32", b, a)).transpose()?;
        let gumbel = gumbel.as_ref().map(elems);
        let inputs = RootInputs {
            simulations_this_search: simulations_this_search.unwrap_or(self.forest.cfg.simulations),
            embeddings: &emb,
            priors: &priors,
            values: &values,
            legal: &legal,
            positions: positions.as_deref(),
            seeds: &seeds,
            add_noise,
            gumbel: gumbel.as_deref(),
        };
        let forest = &mut self.forest;
        py.detach(|| forest.reset(&inputs)).map_err(to_py)?;
        self.afterstate_order.clear();
        self.state_order.clear();
        self.afterstate_answered = true;
        self.state_answered = true;
        Ok(())
    }

    /// One step: descend the free roots, then request the leaves of one kind
    /// (both when needed to make progress). Returns the number of requested
    /// (afterstate, state) leaves, listed in the leaf buffers; (0, 0) means the
    /// search is complete.
    fn select(&mut self, py: Python<'_>) -> PyResult<(usize, usize)> {
        if !self.afterstate_answered || !self.state_answered {
            return Err(PyValueError::new_err(
                "the requested leaves were not all answered: call expand_afterstates / expand_states for what select() returned",
            ));
        }
        let mut as_roots = self.afterstate_roots.bind(py).readwrite();
        let mut as_nodes = self.afterstate_nodes.bind(py).readwrite();
        let mut as_actions = self.afterstate_actions.bind(py).readwrite();
        let mut as_inputs = self.afterstate_inputs.bind(py).readwrite();
        let mut st_roots = self.state_roots.bind(py).readwrite();
        let mut st_nodes = self.state_nodes.bind(py).readwrite();
        let mut st_outcomes = self.state_outcomes.bind(py).readwrite();
        let mut st_inputs = self.state_inputs.bind(py).readwrite();
        let out = LeafBuffers {
            as_roots: as_roots.as_slice_mut()?,
            as_nodes: as_nodes.as_slice_mut()?,
            as_actions: as_actions.as_slice_mut()?,
            as_inputs: as_inputs.as_slice_mut()?,
            st_roots: st_roots.as_slice_mut()?,
            st_nodes: st_nodes.as_slice_mut()?,
            st_outcomes: st_outcomes.as_slice_mut()?,
            st_inputs: st_inputs.as_slice_mut()?,
        };
        let (forest, as_order, st_order) = (&mut self.forest, &mut self.afterstate_order, &mut self.state_order);
        py.detach(|| select_into(forest, out, as_order, st_order)).map_err(to_py)?;
        self.afterstate_answered = self.afterstate_order.is_empty();
        self.state_answered = self.state_order.is_empty();
        Ok((self.afterstate_order.len(), self.state_order.len()))
    }

    /// Answer the afterstate leaves, in the order select() listed them.
    fn expand_afterstates(
        &mut self,
        py: Python<'_>,
        embeddings: &Bound<'_, PyAny>,
        chance_logits: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if self.afterstate_answered {
            return Err(PyValueError::new_err(
                "no afterstate leaves are pending (already answered, or select() found none)",
            ));
        }
        let n = self.afterstate_order.len();
        let (c, d) = (self.forest.cfg.num_outcomes, self.forest.cfg.embedding_dim);
        let emb = array2::<f32>(embeddings, "afterstate embeddings", "float32", n, d)?;
        let logits = array2::<f32>(chance_logits, "chance_logits", "float32", n, c)?;
        let vals = array1::<f32>(values, "afterstate values", "float32", n)?;
        let (emb, logits, vals) = (elems(&emb), elems(&logits), elems(&vals));
        // Check every row before touching any tree, so a rejected answer can be retried.
        if !(all_finite(&emb) & all_finite(&logits) & all_finite(&vals)) {
            return Err(PyValueError::new_err("afterstate outputs contain NaN or inf"));
        }
        let (forest, order) = (&mut self.forest, &self.afterstate_order);
        py.detach(|| {
            for (i, &b) in order.iter().enumerate() {
                forest.expand_afterstate(b, &emb[i * d..(i + 1) * d], &logits[i * c..(i + 1) * c], vals[i])?;
            }
            Ok(())
        })
        .map_err(to_py)?;
        self.afterstate_answered = true;
        Ok(())
    }

    /// Answer the state leaves, in the order select() listed them.
    fn expand_states(
        &mut self,
        py: Python<'_>,
        embeddings: &Bound<'_, PyAny>,
        policy_logits: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        rewards: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if self.state_answered {
            return Err(PyValueError::new_err("no state leaves are pending (already answered, or select() found none)"));
        }
        let n = self.state_order.len();
        let (a, d) = (self.forest.cfg.num_actions, self.forest.cfg.embedding_dim);
        let emb = array2::<f32>(embeddings, "state embeddings", "float32", n, d)?;
        let logits = array2::<f32>(policy_logits, "policy_logits", "float32", n, a)?;
        let vals = array1::<f32>(values, "state values", "float32", n)?;
        let rews = array1::<f32>(rewards, "rewards", "float32", n)?;
        let (emb, logits, vals, rews) = (elems(&emb), elems(&logits), elems(&vals), elems(&rews));
        if !(all_finite(&emb) & all_finite(&logits) & all_finite(&vals) & all_finite(&rews)) {
            return Err(PyValueError::new_err("state outputs contain NaN or inf"));
        }
        let (forest, order) = (&mut self.forest, &self.state_order);
        py.detach(|| {
            for (i, &b) in order.iter().enumerate() {
                forest.expand_state(b, &emb[i * d..(i + 1) * d], &logits[i * a..(i + 1) * a], vals[i], rews[i])?;
            }
            Ok(())
        })
        .map_err(to_py)?;
        self.state_answered = true;
        Ok(())
    }

    /// Root visit counts, int32 [B, A].
    fn root_visit_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i32>>> {
        let (b, a) = (self.forest.batch_size, self.forest.cfg.num_actions);
        let mut counts = vec![0u32; b * a];
        self.forest.root_visit_counts(&mut counts).map_err(to_py)?;
        let counts: Vec<i32> = counts.into_iter().map(|c| c as i32).collect();
        PyArray1::from_vec(py, counts).reshape([b, a])
    }

    /// Mean backed-up value of each root, float32 [B].
    fn root_values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let mut v = vec![0.0f64; self.forest.batch_size];
        self.forest.root_values(&mut v).map_err(to_py)?;
        Ok(PyArray1::from_vec(py, v.into_iter().map(|x| x as f32).collect()))
    }

    /// Visit policy at a temperature, float32 [B, A]; 0 means argmax.
    fn visit_policy<'py>(&self, py: Python<'py>, temperature: f64) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (b, a) = (self.forest.batch_size, self.forest.cfg.num_actions);
        let mut p = vec![0.0f64; b * a];
        self.forest.visit_policy(temperature, &mut p).map_err(to_py)?;
        PyArray1::from_vec(py, p.into_iter().map(|x| x as f32).collect()).reshape([b, a])
    }

    /// Chosen action per root, int64 [B].
    fn choose_actions<'py>(&mut self, py: Python<'py>, temperature: f64) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let mut out = vec![0i64; self.forest.batch_size];
        self.forest.choose_actions(temperature, &mut out).map_err(to_py)?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// Gumbel search: the improved policy (the policy target), float32 [B, A].
    fn improved_policy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (b, a) = (self.forest.batch_size, self.forest.cfg.num_actions);
        let mut p = vec![0.0f64; b * a];
        self.forest.improved_policy(&mut p).map_err(to_py)?;
        PyArray1::from_vec(py, p.into_iter().map(|x| x as f32).collect()).reshape([b, a])
    }

    /// Gumbel search: the action to act with per root, int64 [B].
    fn gumbel_actions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let mut out = vec![0i64; self.forest.batch_size];
        self.forest.gumbel_actions(&mut out).map_err(to_py)?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// JSON rendering of root `root`'s tree down to `max_depth` levels.
    #[pyo3(signature = (root, max_depth=4))]
    fn tree_json(&self, root: usize, max_depth: usize) -> PyResult<String> {
        self.forest.tree_json(root, max_depth).map_err(to_py)
    }
}

#[pymodule]
fn _mcts_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBatchedSearch>()?;
    m.add("DECISION", crate::tree::DECISION)?;
    m.add("CHANCE", crate::tree::CHANCE)?;
    Ok(())
}
