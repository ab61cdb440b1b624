//! The select / expand / backup protocol over the forest's B roots: each
//! step, every free root descends one simulation to its next leaf (pUCT or the
//! Gumbel rules, `action_selection` and `gumbel`); Python answers the
//! requested leaves with the networks; the answers are expanded and backed up.
//!
//! Nothing here knows about Python: the PyO3 layer converts arrays and calls
//! these functions.

use crate::error::{fail, SearchError};
use crate::tree::{Forest, Leaf, LeafKind, CHANCE, DECISION, ROOT, UNEXPANDED};

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

impl Forest {
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
            if self.leaves[b].is_some() || self.sims_done[b] >= self.simulations_this_search {
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
                let has_more = self.sims_done[b] < self.simulations_this_search;
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
