//! Gumbel MuZero at the root (Danihelka et al., "Policy improvement by
//! planning with Gumbel", ICLR 2022), the search setting beside pUCT.
//!
//! * Root: Gumbel top-k with Sequential Halving (the schedule in
//!   `seq_halving`). Each simulation visits, among the actions whose visit
//!   count equals the schedule's "considered visit", the one with the largest
//!   `g(a) + logit(a) + sigma(q(a))`; with few simulations every considered
//!   action is tried once before any twice.
//! * The acted action: the best `g + logit + sigma(q)` among the most visited;
//!   the policy target: `softmax(logits + sigma(completed q))`.
//!
//! Interior decision nodes and sigma(completed q) are in `action_selection`.
//! DeepMind's mctx `gumbel_muzero_policy` is the reference; a test checks
//! this implementation against its output.

use crate::action_selection::logit;
use crate::tree::{Forest, ROOT};

/// Logits below this are clamped when scoring the considered actions (as mctx).
const LOW_LOGIT: f64 = -1e9;

impl Forest {
    /// `max(LOW_LOGIT, g + logit - max logit + sigma(q))` for the allowed
    /// actions with exactly `considered_visit` visits; the best of them.
    fn best_considered(&self, b: usize, considered_visit: f64, visits: &[f64], sigma_q: &[f64]) -> Option<usize> {
        let a = self.cfg.num_actions;
        let base = self.at(b, ROOT) * self.width;
        let logits: Vec<f64> = (0..a).map(|i| logit(self.prior[base + i])).collect();
        let max_logit = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let gumbel = &self.root_gumbel[b * a..(b + 1) * a];
        let mut best: Option<(usize, f64)> = None;
        for i in 0..a {
            if !self.legal[b * a + i] || visits[i] != considered_visit {
                continue;
            }
            let score = (gumbel[i] + (logits[i] - max_logit) + sigma_q[i]).max(LOW_LOGIT);
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Sequential Halving with Gumbel at the root.
    pub(crate) fn gumbel_root_action(&self, b: usize) -> usize {
        let (visits, sigma_q) = self.completed_q(b, ROOT);
        let a = self.cfg.num_actions;
        let legal = (0..a).filter(|&i| self.legal[b * a + i]).count();
        let considered = legal.min(self.gumbel_config().max_considered_actions);
        let simulation = visits.iter().sum::<f64>() as usize;
        let target = self.halving[considered].get(simulation).copied().unwrap_or(0) as f64;
        self.best_considered(b, target, &visits, &sigma_q)
            .or_else(|| self.best_considered(b, visits.iter().copied().fold(0.0, f64::max), &visits, &sigma_q))
            .unwrap_or_else(|| (0..a).find(|&i| self.legal[b * a + i]).unwrap_or(0))
    }

    /// The action to act with: the best `g + logit + sigma(q)` among the most visited root actions.
    pub(crate) fn gumbel_final_action(&self, b: usize) -> usize {
        let (visits, sigma_q) = self.completed_q(b, ROOT);
        let a = self.cfg.num_actions;
        let most = (0..a).filter(|&i| self.legal[b * a + i]).map(|i| visits[i]).fold(0.0, f64::max);
        self.best_considered(b, most, &visits, &sigma_q)
            .unwrap_or_else(|| (0..a).find(|&i| self.legal[b * a + i]).unwrap_or(0))
    }
}
