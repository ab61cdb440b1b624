//! The forest of B trees: one struct-of-arrays arena, allocated once and
//! reused by every `reset`. Each root owns `N = simulations + 1` node slots:
//! every simulation adds exactly one node (a chance node for an afterstate
//! leaf or a decision node for a state leaf), so the arena never grows.
//!
//! Levels alternate: a decision node (a state) picks an action; its child is
//! a chance node (the afterstate), which picks one of the market outcomes;
//! that child is the next decision node. The edge decision -> chance carries
//! no reward and no discount; the edge chance -> decision carries the
//! predicted reward and the discount.

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::config::SearchConfig;
use crate::error::{fail, SearchError};

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

/// The forest of B trees.
pub struct Forest {
    pub cfg: SearchConfig,
    pub batch_size: usize,
    /// Node slots per tree: simulations + 1.
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
    /// Simulations each root runs in this search (at most cfg.simulations).
    pub(crate) simulations_this_search: usize,
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

impl Forest {
    pub fn new(batch_size: usize, cfg: SearchConfig) -> Result<Forest, SearchError> {
        if batch_size == 0 {
            return fail("batch_size must be at least 1".into());
        }
        cfg.check()?;
        let n = cfg.simulations + 1;
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
            simulations_this_search: cfg.simulations,
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

    pub fn embedding(&self, b: usize, node: usize) -> &[f32] {
        let d = self.cfg.embedding_dim;
        let i = self.at(b, node);
        &self.embeddings[i * d..(i + 1) * d]
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

    /// A decision node's prior renormalised over the actions it allows (the
    /// root's mask, or its position's rules); uniform over them if the network
    /// put no mass there at all (reset refuses that at a root).
    pub(crate) fn restrict_prior_to_legal(&mut self, b: usize, node: usize) {
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
}
