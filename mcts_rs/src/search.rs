//! Batched stochastic MuZero search over `B` independent roots.
//!
//! The forest is one struct-of-arrays arena, allocated once and reused by
//! every `reset`. Each root owns `N = max_simulations + 1` node slots: every
//! simulation adds exactly one node (a chance node for an afterstate leaf or a
//! decision node for a state leaf), so the arena never grows.
//!
//! Levels alternate: a decision node (a state) picks an action by pUCT over
//! min-max-normalised Q; its child is a chance node (the afterstate), which
//! picks one of the market outcomes; that child is the next decision node.
//! The edge decision -> chance carries no reward and no discount; the edge
//! chance -> decision carries the predicted reward and the discount.
//!
//! Nothing here knows about Python: the PyO3 layer converts arrays and calls
//! these functions.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use rand_pcg::Pcg64Mcg;

use crate::gumbel::{considered_visit_sequence, GumbelConfig};
use crate::positions::PositionRules;

/// Index of every root node inside its own tree.
pub const ROOT: usize = 0;
/// A child slot not expanded yet.
pub const UNEXPANDED: i32 = -1;
/// Parent of a root.
pub const NO_PARENT: i32 = -1;

pub const DECISION: u8 = 0;
pub const CHANCE: u8 = 1;

/// Which network a leaf needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKind {
    /// A decision node's action has no chance child yet: run the afterstate network.
    Afterstate,
    /// A chance node's outcome has no decision child yet: run the dynamics + prediction networks.
    State,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchConfig {
    pub num_actions: usize,
    pub num_outcomes: usize,
    pub embedding_dim: usize,
    pub max_simulations: usize,
    pub discount: f64,
    pub pb_c_init: f64,
    pub pb_c_base: f64,
    pub dirichlet_alpha: f64,
    pub dirichlet_fraction: f64,
    /// Sample chance outcomes from the predicted distribution (one seeded
    /// generator per root and search) instead of argmax p(c) / (N(c) + 1).
    pub sample_outcomes: bool,
    /// Track each node's position and mask illegal actions below the root
    /// too; without rules only the root is masked.
    pub positions: Option<PositionRules>,
    /// Gumbel MuZero root and interior selection instead of pUCT (Dirichlet
    /// noise then does not apply; `add_noise` draws the root's Gumbel noise).
    pub gumbel: Option<GumbelConfig>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            num_actions: 4,
            num_outcomes: 3,
            embedding_dim: 256,
            max_simulations: 50,
            discount: 0.997,
            pb_c_init: 1.25,
            pb_c_base: 19652.0,
            dirichlet_alpha: 1.0,
            dirichlet_fraction: 0.5,
            sample_outcomes: false,
            positions: None,
            gumbel: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchError(pub String);

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SearchError {}

pub(crate) fn fail<T>(msg: String) -> Result<T, SearchError> {
    Err(SearchError(msg))
}

/// One leaf per root per simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub kind: LeafKind,
    /// The existing node whose child is missing (decision node for an
    /// afterstate leaf, chance node for a state leaf).
    pub parent: usize,
    /// Action (afterstate leaf) or outcome (state leaf) of the missing child.
    pub index: usize,
    /// Arena slot the new node will take.
    pub node: usize,
}

/// Root inputs for one search.
pub struct RootInputs<'a> {
    /// Simulations per root for this search (at most max_simulations).
    pub num_simulations: usize,
    pub embeddings: &'a [f32],   // [B, D]
    pub priors: &'a [f32],       // [B, A] probabilities
    pub values: &'a [f32],       // [B]
    pub legal: &'a [bool],       // [B, A]
    /// Position index of each root, [B]; required with position rules.
    pub positions: Option<&'a [i64]>,
    pub seeds: &'a [u64],        // [B]
    pub add_noise: bool,
    /// Gumbel search only: the root noise to use instead of drawing it, [B, A].
    pub gumbel: Option<&'a [f32]>,
}

/// The forest of B trees.
pub struct Forest {
    pub cfg: SearchConfig,
    pub batch_size: usize,
    /// Node slots per tree: max_simulations + 1.
    pub nodes_per_tree: usize,
    /// Child slots per node: max(num_actions, num_outcomes).
    pub(crate) width: usize,

    // Per node, indexed [b * N + node].
    pub(crate) kind: Vec<u8>,       // [B, N] DECISION or CHANCE
    pub(crate) parent: Vec<i32>,    // [B, N] parent node or NO_PARENT
    pub(crate) visits: Vec<u32>,    // [B, N]
    pub(crate) value_sum: Vec<f64>, // [B, N] sum of backed-up returns
    pub(crate) reward: Vec<f64>,    // [B, N] reward on the edge into a decision node
    pub(crate) position: Vec<usize>, // [B, N] position index (0 without position rules)
    pub(crate) node_value: Vec<f64>, // [B, N] the network's value when the node was expanded

    // Per child slot, indexed [(b * N + node) * W + slot].
    pub(crate) child: Vec<i32>,  // [B, N, W] child node or UNEXPANDED
    pub(crate) prior: Vec<f64>,  // [B, N, W] action prior (decision) or outcome probability (chance)

    pub(crate) embeddings: Vec<f32>, // [B, N, D] latent of each node (state or afterstate)

    // Per tree.
    pub(crate) num_nodes: Vec<usize>,  // [B]
    pub(crate) legal: Vec<bool>,       // [B, A] root legal mask
    pub(crate) min_q: Vec<f64>,        // [B] min-max statistics of Q over the tree
    pub(crate) max_q: Vec<f64>,        // [B]
    pub(crate) rngs: Vec<Pcg64Mcg>,    // [B] one seeded generator per root and search
    /// Simulations each root runs in this search.
    pub(crate) target_simulations: usize,
    pub(crate) sims_done: Vec<usize>, // [B] simulations started per root
    pub(crate) root_gumbel: Vec<f64>, // [B, A] Gumbel noise at the roots (Gumbel search)
    /// Sequential Halving: halving[k][s] is the visit count the root action of
    /// simulation s must have when k actions are considered (Gumbel search).
    pub(crate) halving: Vec<Vec<u32>>,

    // Leaves selected and not answered yet. A root with a pending leaf waits;
    // only `requested` leaves are handed to Python in the current step.
    pub(crate) leaves: Vec<Option<Leaf>>, // [B]
    pub(crate) requested: Vec<bool>,      // [B]
    pub(crate) pending_requests: usize,
    pub(crate) ready: bool,
}

fn softmax_into(logits: &[f32], out: &mut [f64]) {
    let mut max = f64::NEG_INFINITY;
    for &x in logits {
        max = max.max(x as f64);
    }
    let mut total = 0.0;
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = ((x as f64) - max).exp();
        total += *o;
    }
    for o in out.iter_mut() {
        *o /= total;
    }
}

/// True when no element is NaN or infinite. Branch-free so it vectorises:
/// the check runs on every network output row.
#[inline]
pub fn all_finite(values: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    values.iter().fold(true, |ok, v| ok & (v.to_bits() & EXP != EXP))
}

fn check_finite(values: &[f32], what: &str, row_len: usize) -> Result<(), SearchError> {
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return fail(format!("{what} contains a non-finite value (NaN or inf) in row {}", pos / row_len.max(1)));
    }
    Ok(())
}

impl Forest {
    pub fn new(batch_size: usize, cfg: SearchConfig) -> Result<Forest, SearchError> {
        if batch_size == 0 {
            return fail("batch_size must be at least 1".into());
        }
        if cfg.num_actions < 1 || cfg.num_outcomes < 1 {
            return fail("num_actions and num_outcomes must be at least 1".into());
        }
        if cfg.embedding_dim == 0 {
            return fail("embedding_dim must be at least 1".into());
        }
        if cfg.max_simulations == 0 {
            return fail("max_simulations must be at least 1".into());
        }
        if !(cfg.discount.is_finite() && cfg.discount > 0.0 && cfg.discount <= 1.0) {
            return fail(format!("discount must be in (0, 1], got {}", cfg.discount));
        }
        if !(cfg.pb_c_base.is_finite() && cfg.pb_c_base > 0.0 && cfg.pb_c_init.is_finite()) {
            return fail("pb_c_init must be finite and pb_c_base positive".into());
        }
        if !(cfg.dirichlet_alpha.is_finite() && cfg.dirichlet_alpha > 0.0) {
            return fail(format!("dirichlet_alpha must be positive, got {}", cfg.dirichlet_alpha));
        }
        if !(0.0..=1.0).contains(&cfg.dirichlet_fraction) {
            return fail(format!("dirichlet_fraction must be in [0, 1], got {}", cfg.dirichlet_fraction));
        }
        if let Some(g) = &cfg.gumbel {
            if g.max_considered_actions < 1 {
                return fail("max_considered_actions must be at least 1".into());
            }
            let finite = [g.gumbel_scale, g.value_scale, g.maxvisit_init].iter().all(|x| x.is_finite() && *x >= 0.0);
            if !finite {
                return fail("gumbel_scale, value_scale and maxvisit_init must be finite and >= 0".into());
            }
        }
        let n = cfg.max_simulations + 1;
        let w = cfg.num_actions.max(cfg.num_outcomes);
        let nodes = batch_size * n;
        Ok(Forest {
            batch_size,
            nodes_per_tree: n,
            width: w,
            kind: vec![DECISION; nodes],
            parent: vec![NO_PARENT; nodes],
            visits: vec![0; nodes],
            value_sum: vec![0.0; nodes],
            reward: vec![0.0; nodes],
            position: vec![0; nodes],
            node_value: vec![0.0; nodes],
            child: vec![UNEXPANDED; nodes * w],
            prior: vec![0.0; nodes * w],
            embeddings: vec![0.0; nodes * cfg.embedding_dim],
            num_nodes: vec![0; batch_size],
            legal: vec![false; batch_size * cfg.num_actions],
            min_q: vec![f64::INFINITY; batch_size],
            max_q: vec![f64::NEG_INFINITY; batch_size],
            rngs: (0..batch_size).map(|_| Pcg64Mcg::seed_from_u64(0)).collect(),
            target_simulations: cfg.max_simulations,
            sims_done: vec![0; batch_size],
            root_gumbel: vec![0.0; batch_size * cfg.num_actions],
            halving: Vec::new(),
            leaves: vec![None; batch_size],
            requested: vec![false; batch_size],
            pending_requests: 0,
            ready: false,
            cfg,
        })
    }

    #[inline]
    pub(crate) fn at(&self, b: usize, node: usize) -> usize {
        b * self.nodes_per_tree + node
    }

    /// Start a new search: every tree becomes a single expanded root.
    pub fn reset(&mut self, inp: &RootInputs) -> Result<(), SearchError> {
        let (bsz, a, d) = (self.batch_size, self.cfg.num_actions, self.cfg.embedding_dim);
        if inp.embeddings.len() != bsz * d
            || inp.priors.len() != bsz * a
            || inp.values.len() != bsz
            || inp.legal.len() != bsz * a
            || inp.seeds.len() != bsz
        {
            return fail("reset inputs do not match the batch shape".into());
        }
        if inp.num_simulations == 0 || inp.num_simulations > self.cfg.max_simulations {
            return fail(format!(
                "num_simulations must be in 1..={} (max_simulations), got {}",
                self.cfg.max_simulations, inp.num_simulations
            ));
        }
        check_finite(inp.embeddings, "root_embeddings", d)?;
        check_finite(inp.values, "root_values", 1)?;
        if let Some(g) = inp.gumbel {
            if self.cfg.gumbel.is_none() {
                return fail("root gumbel noise given, but the search selects by pUCT".into());
            }
            if g.len() != bsz * a {
                return fail("reset inputs do not match the batch shape".into());
            }
            check_finite(g, "gumbel", a)?;
        }
        self.check_root_positions(inp)?;
        for b in 0..bsz {
            let priors = &inp.priors[b * a..(b + 1) * a];
            let legal = &inp.legal[b * a..(b + 1) * a];
            if let Some(p) = priors.iter().find(|p| !p.is_finite() || **p < 0.0) {
                return fail(format!("root_priors of root {b} must be finite and non-negative, got {p}"));
            }
            if !legal.iter().any(|&l| l) {
                return fail(format!("legal_mask of root {b} allows no action"));
            }
            let legal_mass: f64 = priors.iter().zip(legal).filter(|(_, &l)| l).map(|(&p, _)| p as f64).sum();
            if legal_mass <= 0.0 {
                return fail(format!("root_priors of root {b} put no mass on a legal action"));
            }
        }

        self.kind.fill(DECISION);
        self.parent.fill(NO_PARENT);
        self.visits.fill(0);
        self.value_sum.fill(0.0);
        self.reward.fill(0.0);
        self.child.fill(UNEXPANDED);
        self.prior.fill(0.0);
        self.min_q.fill(f64::INFINITY);
        self.max_q.fill(f64::NEG_INFINITY);
        self.legal.copy_from_slice(inp.legal);
        self.target_simulations = inp.num_simulations;
        self.sims_done.fill(0);
        self.root_gumbel.fill(0.0);
        if let Some(g) = &self.cfg.gumbel {
            if self.halving.first().map(|row| row.len()) != Some(inp.num_simulations) {
                self.halving = (0..=g.max_considered_actions.min(a))
                    .map(|k| considered_visit_sequence(k, inp.num_simulations))
                    .collect();
            }
        }
        self.leaves.fill(None);
        self.requested.fill(false);
        self.pending_requests = 0;

        for b in 0..bsz {
            self.rngs[b] = Pcg64Mcg::seed_from_u64(inp.seeds[b]);
            let root = self.at(b, ROOT);
            self.num_nodes[b] = 1;
            self.visits[root] = 1;
            self.value_sum[root] = inp.values[b] as f64;
            self.node_value[root] = inp.values[b] as f64;
            self.position[root] = inp.positions.map_or(0, |p| p[b] as usize);
            self.embeddings[root * d..(root + 1) * d].copy_from_slice(&inp.embeddings[b * d..(b + 1) * d]);

            let legal = &inp.legal[b * a..(b + 1) * a];
            let base = root * self.width;
            for (p, &raw) in self.prior[base..base + a].iter_mut().zip(&inp.priors[b * a..(b + 1) * a]) {
                *p = raw as f64;
            }
            self.restrict_prior_to_legal(b, ROOT);
            if let Some(g) = &self.cfg.gumbel {
                let noise = &mut self.root_gumbel[b * a..(b + 1) * a];
                if let Some(given) = inp.gumbel {
                    for (n, &x) in noise.iter_mut().zip(&given[b * a..(b + 1) * a]) {
                        *n = x as f64;
                    }
                } else if inp.add_noise && g.gumbel_scale > 0.0 {
                    for n in noise.iter_mut() {
                        // Gumbel(0, 1) = -ln(-ln U), U in (0, 1)
                        let u: f64 = self.rngs[b].random::<f64>().max(f64::MIN_POSITIVE);
                        *n = -g.gumbel_scale * (-u.ln()).ln();
                    }
                }
            } else if inp.add_noise && self.cfg.dirichlet_fraction > 0.0 {
                let gamma = Gamma::new(self.cfg.dirichlet_alpha, 1.0)
                    .map_err(|e| SearchError(format!("bad dirichlet_alpha: {e}")))?;
                let mut noise = vec![0.0f64; a];
                let mut total = 0.0;
                for i in 0..a {
                    if legal[i] {
                        noise[i] = gamma.sample(&mut self.rngs[b]);
                        total += noise[i];
                    }
                }
                if total > 0.0 {
                    let f = self.cfg.dirichlet_fraction;
                    for i in 0..a {
                        if legal[i] {
                            self.prior[base + i] = (1.0 - f) * self.prior[base + i] + f * noise[i] / total;
                        }
                    }
                }
            }
        }
        self.ready = true;
        Ok(())
    }

    /// With position rules, every root has a position and its legal mask
    /// allows nothing the rules forbid there; without, no positions are given.
    fn check_root_positions(&self, inp: &RootInputs) -> Result<(), SearchError> {
        let a = self.cfg.num_actions;
        match (&self.cfg.positions, inp.positions) {
            (None, None) => Ok(()),
            (None, Some(_)) => fail("root_positions given, but the search has no position_transitions".into()),
            (Some(_), None) => fail("the search has position_transitions: reset() needs root_positions".into()),
            (Some(rules), Some(positions)) => {
                if positions.len() != self.batch_size {
                    return fail("reset inputs do not match the batch shape".into());
                }
                for (b, &p) in positions.iter().enumerate() {
                    if !(0..rules.num_positions() as i64).contains(&p) {
                        return fail(format!("root_positions[{b}] = {p} is not a position index in 0..{}", rules.num_positions()));
                    }
                    if let Some(bad) = (0..a).find(|&i| inp.legal[b * a + i] && !rules.allows(i, p as usize)) {
                        return fail(format!("legal_mask of root {b} allows action {bad}, which position {p} forbids"));
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether `action` may be chosen at decision node `node`: the root's
    /// mask at the root, the position rules below it (everything without).
    #[inline]
    pub(crate) fn allowed(&self, b: usize, node: usize, action: usize) -> bool {
        if node == ROOT {
            return self.legal[b * self.cfg.num_actions + action];
        }
        match &self.cfg.positions {
            Some(rules) => rules.allows(action, self.position[self.at(b, node)]),
            None => true,
        }
    }

    fn normalized_q(&self, b: usize, q: f64) -> f64 {
        let (lo, hi) = (self.min_q[b], self.max_q[b]);
        if hi > lo {
            (q - lo) / (hi - lo)
        } else {
            0.0
        }
    }

    /// pUCT over min-max-normalised Q; illegal actions are never chosen;
    /// ties go to the lowest action index.
    fn select_action(&self, b: usize, node: usize) -> usize {
        let idx = self.at(b, node);
        let n_parent = self.visits[idx] as f64;
        let pb_c = self.cfg.pb_c_init + ((n_parent + self.cfg.pb_c_base + 1.0) / self.cfg.pb_c_base).ln();
        let sqrt_n = n_parent.sqrt();
        let mut best = usize::MAX;
        let mut best_score = f64::NEG_INFINITY;
        for a in 0..self.cfg.num_actions {
            if !self.allowed(b, node, a) {
                continue;
            }
            let c = self.child[idx * self.width + a];
            let (n_child, q) = if c == UNEXPANDED {
                (0.0, 0.0)
            } else {
                let ci = self.at(b, c as usize);
                let v = self.visits[ci] as f64;
                (v, self.normalized_q(b, self.value_sum[ci] / v))
            };
            let score = q + self.prior[idx * self.width + a] * sqrt_n / (1.0 + n_child) * pb_c;
            if best == usize::MAX || score > best_score {
                best = a;
                best_score = score;
            }
        }
        best
    }

    /// argmax p(c) / (N(c) + 1), or a draw from p(c) with this root's generator.
    fn select_outcome(&mut self, b: usize, node: usize) -> usize {
        let idx = self.at(b, node);
        let w = self.width;
        let k = self.cfg.num_outcomes;
        if self.cfg.sample_outcomes {
            let u: f64 = self.rngs[b].random::<f64>();
            let mut acc = 0.0;
            for o in 0..k {
                acc += self.prior[idx * w + o];
                if u < acc {
                    return o;
                }
            }
            return (0..k).rev().find(|&o| self.prior[idx * w + o] > 0.0).unwrap_or(k - 1);
        }
        let mut best = 0;
        let mut best_score = f64::NEG_INFINITY;
        for o in 0..k {
            let c = self.child[idx * w + o];
            let n = if c == UNEXPANDED { 0.0 } else { self.visits[self.at(b, c as usize)] as f64 };
            let score = self.prior[idx * w + o] / (n + 1.0);
            if score > best_score {
                best = o;
                best_score = score;
            }
        }
        best
    }

    /// One step: every root that is not waiting on an answer and has
    /// simulations left descends to its next leaf. Then the leaves of one kind
    /// (the more numerous, so each network call is as large as possible) are
    /// requested; the other kind waits. Both kinds are requested when answering
    /// one alone would leave no root free to continue. Roots are independent,
    /// so waiting never changes a root's search, only how leaves are batched.
    /// Returns the number of requested (afterstate, state) leaves; (0, 0) means
    /// the search is complete.
    pub fn select(&mut self) -> Result<(usize, usize), SearchError> {
        if !self.ready {
            return fail("select() called before reset()".into());
        }
        if self.pending_requests > 0 {
            return fail(format!("{} requested leaves were not answered", self.pending_requests));
        }
        for b in 0..self.batch_size {
            if self.leaves[b].is_some() || self.sims_done[b] >= self.target_simulations {
                continue;
            }
            let mut node = ROOT;
            let leaf = loop {
                let idx = self.at(b, node);
                if self.kind[idx] == DECISION {
                    let a = match (&self.cfg.gumbel, node) {
                        (None, _) => self.select_action(b, node),
                        (Some(_), ROOT) => self.gumbel_root_action(b),
                        (Some(_), _) => self.gumbel_interior_action(b, node),
                    };
                    let c = self.child[idx * self.width + a];
                    if c == UNEXPANDED {
                        break Leaf { kind: LeafKind::Afterstate, parent: node, index: a, node: self.num_nodes[b] };
                    }
                    node = c as usize;
                } else {
                    let o = self.select_outcome(b, node);
                    let c = self.child[idx * self.width + o];
                    if c == UNEXPANDED {
                        break Leaf { kind: LeafKind::State, parent: node, index: o, node: self.num_nodes[b] };
                    }
                    node = c as usize;
                }
            };
            self.leaves[b] = Some(leaf);
            self.sims_done[b] += 1;
        }

        let (mut n_after, mut n_state) = (0, 0);
        let (mut after_frees, mut state_frees) = (false, false);
        for (b, leaf) in self.leaves.iter().enumerate() {
            if let Some(leaf) = leaf {
                let has_more = self.sims_done[b] < self.target_simulations;
                match leaf.kind {
                    LeafKind::Afterstate => {
                        n_after += 1;
                        after_frees |= has_more;
                    }
                    LeafKind::State => {
                        n_state += 1;
                        state_frees |= has_more;
                    }
                }
            }
        }
        let (want_after, want_state) = if n_after >= n_state {
            (n_after > 0, n_state > 0 && !after_frees)
        } else {
            (n_after > 0 && !state_frees, true)
        };
        self.pending_requests = 0;
        for b in 0..self.batch_size {
            self.requested[b] = match self.leaves[b] {
                Some(Leaf { kind: LeafKind::Afterstate, .. }) => want_after,
                Some(Leaf { kind: LeafKind::State, .. }) => want_state,
                None => false,
            };
            self.pending_requests += self.requested[b] as usize;
        }
        Ok((if want_after { n_after } else { 0 }, if want_state { n_state } else { 0 }))
    }

    /// Whether root `b`'s leaf is requested in the current step.
    pub fn requested(&self, b: usize) -> bool {
        self.requested[b]
    }

    pub fn leaves(&self) -> &[Option<Leaf>] {
        &self.leaves
    }

    pub fn embedding(&self, b: usize, node: usize) -> &[f32] {
        let d = self.cfg.embedding_dim;
        let i = self.at(b, node);
        &self.embeddings[i * d..(i + 1) * d]
    }

    fn take_leaf(&mut self, b: usize, kind: LeafKind) -> Result<Leaf, SearchError> {
        match self.leaves[b] {
            Some(leaf) if leaf.kind == kind && self.requested[b] => {
                self.leaves[b] = None;
                self.requested[b] = false;
                self.pending_requests -= 1;
                Ok(leaf)
            }
            Some(_) => fail(format!("root {b}'s leaf is not a requested {kind:?} leaf")),
            None => fail(format!("root {b} has no pending leaf (answered twice?)")),
        }
    }

    /// Answer afterstate leaves of `roots` (in order) with the afterstate network's outputs.
    pub fn expand_afterstate(
        &mut self,
        b: usize,
        embedding: &[f32],
        chance_logits: &[f32],
        value: f32,
    ) -> Result<(), SearchError> {
        if !(all_finite(embedding) & all_finite(chance_logits) & value.is_finite()) {
            return fail(format!("afterstate outputs for root {b} contain NaN or inf"));
        }
        let leaf = self.take_leaf(b, LeafKind::Afterstate)?;
        let new = self.add_node(b, &leaf, CHANCE, embedding, 0.0);
        let w = self.width;
        let k = self.cfg.num_outcomes;
        let base = self.at(b, new) * w;
        softmax_into(chance_logits, &mut self.prior[base..base + k]);
        self.backup(b, new, value as f64);
        Ok(())
    }

    /// Answer a state leaf with the dynamics and prediction networks' outputs.
    pub fn expand_state(
        &mut self,
        b: usize,
        embedding: &[f32],
        policy_logits: &[f32],
        value: f32,
        reward: f32,
    ) -> Result<(), SearchError> {
        if !(all_finite(embedding) & all_finite(policy_logits) & value.is_finite() & reward.is_finite()) {
            return fail(format!("state outputs for root {b} contain NaN or inf"));
        }
        let leaf = self.take_leaf(b, LeafKind::State)?;
        let new = self.add_node(b, &leaf, DECISION, embedding, reward as f64);
        let new_idx = self.at(b, new);
        self.node_value[new_idx] = value as f64;
        let w = self.width;
        let a = self.cfg.num_actions;
        let base = self.at(b, new) * w;
        softmax_into(policy_logits, &mut self.prior[base..base + a]);
        if self.cfg.positions.is_some() {
            self.restrict_prior_to_legal(b, new);
        }
        self.backup(b, new, value as f64);
        Ok(())
    }

    /// A decision node's prior renormalised over the actions it allows (the
    /// root's mask, or its position's rules); uniform over them if the network
    /// put no mass there at all (reset refuses that at a root).
    fn restrict_prior_to_legal(&mut self, b: usize, node: usize) {
        let base = self.at(b, node) * self.width;
        let (mut mass, mut count) = (0.0f64, 0usize);
        for i in 0..self.cfg.num_actions {
            if self.allowed(b, node, i) {
                mass += self.prior[base + i];
                count += 1;
            }
        }
        for i in 0..self.cfg.num_actions {
            let ok = self.allowed(b, node, i);
            let p = &mut self.prior[base + i];
            *p = if !ok {
                0.0
            } else if mass > 0.0 {
                *p / mass
            } else {
                1.0 / count as f64
            };
        }
    }

    fn add_node(&mut self, b: usize, leaf: &Leaf, kind: u8, embedding: &[f32], reward: f64) -> usize {
        let new = leaf.node;
        debug_assert_eq!(new, self.num_nodes[b]);
        self.num_nodes[b] += 1;
        let idx = self.at(b, new);
        let pidx = self.at(b, leaf.parent);
        self.kind[idx] = kind;
        self.parent[idx] = leaf.parent as i32;
        self.reward[idx] = reward;
        // An action moves the position; a market outcome does not.
        self.position[idx] = match (&self.cfg.positions, kind) {
            (Some(rules), CHANCE) => rules.next(leaf.index, self.position[pidx]),
            _ => self.position[pidx],
        };
        self.child[pidx * self.width + leaf.index] = new as i32;
        let d = self.cfg.embedding_dim;
        self.embeddings[idx * d..(idx + 1) * d].copy_from_slice(embedding);
        new
    }

    fn backup(&mut self, b: usize, leaf: usize, leaf_value: f64) {
        let mut node = leaf;
        let mut g = leaf_value;
        loop {
            let idx = self.at(b, node);
            self.visits[idx] += 1;
            self.value_sum[idx] += g;
            if self.kind[idx] == CHANCE {
                // A chance node's mean return is Q(parent, action).
                let q = self.value_sum[idx] / self.visits[idx] as f64;
                self.min_q[b] = self.min_q[b].min(q);
                self.max_q[b] = self.max_q[b].max(q);
            } else if node == ROOT {
                break;
            } else {
                g = self.reward[idx] + self.cfg.discount * g;
            }
            node = self.parent[idx] as usize;
        }
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
