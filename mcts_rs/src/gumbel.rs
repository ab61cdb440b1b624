//! Gumbel MuZero action selection (Danihelka et al., "Policy improvement by
//! planning with Gumbel", ICLR 2022), the search setting beside pUCT.
//!
//! * Root: Gumbel top-k with Sequential Halving. Each simulation visits, among
//!   the actions whose visit count equals the schedule's "considered visit",
//!   the one with the largest `g(a) + logit(a) + sigma(q(a))`; with few
//!   simulations every considered action is tried once before any twice.
//! * Interior decision nodes: the deterministic rule
//!   `argmax softmax(logits + sigma(q)) - N(a) / (1 + sum N)`.
//! * The acted action: the best `g + logit + sigma(q)` among the most visited;
//!   the policy target: `softmax(logits + sigma(completed q))`.
//!
//! `sigma(q) = (maxvisit_init + max N) * value_scale * rescaled(q)`, where
//! unvisited actions are completed with the mixed value (the node's network
//! value mixed with the prior-weighted mean Q of the visited actions) and the
//! completed Qs are rescaled to [0, 1] by their own min and max (over all A
//! actions, as DeepMind's mctx does). DeepMind's mctx `gumbel_muzero_policy`
//! is the reference; a test checks this implementation against its output.

use crate::search::{Forest, ROOT, UNEXPANDED};

#[derive(Clone, Debug, PartialEq)]
pub struct GumbelConfig {
    /// Actions considered at the root (k of Gumbel top-k), at least 1.
    pub max_considered_actions: usize,
    /// Scale of the Gumbel noise when noise is on (0: deterministic).
    pub gumbel_scale: f64,
    pub value_scale: f64,
    pub maxvisit_init: f64,
}

impl Default for GumbelConfig {
    fn default() -> Self {
        GumbelConfig { max_considered_actions: 16, gumbel_scale: 1.0, value_scale: 0.1, maxvisit_init: 50.0 }
    }
}

/// Logits below this are clamped when scoring the considered actions (as mctx).
const LOW_LOGIT: f64 = -1e9;

/// The visit count each simulation's root action must have, for `considered`
/// actions and `num_simulations` simulations (Sequential Halving).
pub fn considered_visit_sequence(considered: usize, num_simulations: usize) -> Vec<u32> {
    if considered <= 1 {
        return (0..num_simulations as u32).collect();
    }
    let log2max = (considered as f64).log2().ceil() as usize;
    let mut sequence = Vec::with_capacity(num_simulations + considered);
    let mut visits = vec![0u32; considered];
    let mut num_considered = considered;
    while sequence.len() < num_simulations {
        let extra = (num_simulations / (log2max * num_considered)).max(1);
        for _ in 0..extra {
            sequence.extend_from_slice(&visits[..num_considered]);
            for v in visits[..num_considered].iter_mut() {
                *v += 1;
            }
        }
        num_considered = (num_considered / 2).max(2);
    }
    sequence.truncate(num_simulations);
    sequence
}

/// Prior probabilities as logits; an action with no mass gets -inf.
#[inline]
fn logit(p: f64) -> f64 {
    if p > 0.0 {
        p.ln()
    } else {
        f64::NEG_INFINITY
    }
}

impl Forest {
    pub(crate) fn gumbel_config(&self) -> &GumbelConfig {
        self.cfg.gumbel.as_ref().expect("a Gumbel search")
    }

    /// (visits, sigma(completed q)) of each action at decision node `node`, [A] each.
    pub(crate) fn completed_q(&self, b: usize, node: usize) -> (Vec<f64>, Vec<f64>) {
        let g = self.gumbel_config();
        let a = self.cfg.num_actions;
        let idx = self.at(b, node);
        let base = idx * self.width;
        let mut visits = vec![0.0f64; a];
        let mut q = vec![0.0f64; a];
        for i in 0..a {
            let c = self.child[base + i];
            if c != UNEXPANDED {
                let ci = self.at(b, c as usize);
                visits[i] = self.visits[ci] as f64;
                q[i] = self.value_sum[ci] / visits[i]; // decision -> chance: no reward, no discount
            }
        }
        // the mixed value: the network's value and the prior-weighted Q of what was visited
        let (mut sum_visits, mut sum_probs, mut weighted) = (0.0, 0.0, 0.0);
        for i in 0..a {
            if visits[i] > 0.0 {
                let p = self.prior[base + i].max(f64::MIN_POSITIVE);
                sum_visits += visits[i];
                sum_probs += p;
                weighted += p * q[i];
            }
        }
        let weighted_q = if sum_probs > 0.0 { weighted / sum_probs } else { 0.0 };
        let mixed = (self.node_value[idx] + sum_visits * weighted_q) / (sum_visits + 1.0);
        for i in 0..a {
            if visits[i] == 0.0 {
                q[i] = mixed;
            }
        }
        let (lo, hi) = q.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let max_visits = visits.iter().copied().fold(0.0, f64::max);
        let scale = (g.maxvisit_init + max_visits) * g.value_scale;
        for x in q.iter_mut() {
            *x = scale * (*x - lo) / (hi - lo).max(1e-8);
        }
        (visits, q)
    }

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

    /// The deterministic interior rule over the actions this node allows.
    pub(crate) fn gumbel_interior_action(&self, b: usize, node: usize) -> usize {
        let (visits, sigma_q) = self.completed_q(b, node);
        let probs = self.improved_probs(b, node, &sigma_q);
        let total: f64 = visits.iter().sum();
        let mut best = usize::MAX;
        let mut best_score = f64::NEG_INFINITY;
        for i in 0..self.cfg.num_actions {
            if !self.allowed(b, node, i) {
                continue;
            }
            let score = probs[i] - visits[i] / (1.0 + total);
            if best == usize::MAX || score > best_score {
                best = i;
                best_score = score;
            }
        }
        best
    }

    /// softmax(logits + sigma(q)) over the actions `node` allows (0 elsewhere).
    pub(crate) fn improved_probs(&self, b: usize, node: usize, sigma_q: &[f64]) -> Vec<f64> {
        let a = self.cfg.num_actions;
        let base = self.at(b, node) * self.width;
        let mut out: Vec<f64> = (0..a)
            .map(|i| if self.allowed(b, node, i) { logit(self.prior[base + i]) + sigma_q[i] } else { f64::NEG_INFINITY })
            .collect();
        let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !max.is_finite() {
            // no allowed action has prior mass: uniform over the allowed ones
            let n = (0..a).filter(|&i| self.allowed(b, node, i)).count().max(1) as f64;
            return (0..a).map(|i| if self.allowed(b, node, i) { 1.0 / n } else { 0.0 }).collect();
        }
        let mut total = 0.0;
        for x in out.iter_mut() {
            *x = (*x - max).exp();
            total += *x;
        }
        out.iter_mut().for_each(|x| *x /= total);
        out
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

#[cfg(test)]
mod tests {
    use super::considered_visit_sequence;

    #[test]
    fn sequential_halving_schedule() {
        // 3 actions, 5 simulations: each once, then the best two once more
        assert_eq!(considered_visit_sequence(3, 5), vec![0, 0, 0, 1, 1]);
        assert_eq!(considered_visit_sequence(1, 4), vec![0, 1, 2, 3]);
        assert_eq!(considered_visit_sequence(4, 8), vec![0, 0, 0, 0, 1, 1, 2, 2]);
        // 16 actions, 32 simulations: 16 x 1, then 8 x 1 ... the schedule
        // never asks for more visits than a halving round gave
        let s = considered_visit_sequence(16, 32);
        assert_eq!(s.len(), 32);
        assert!(s[..16].iter().all(|&v| v == 0));
        assert!(s[16..24].iter().all(|&v| v == 1));
    }
}
