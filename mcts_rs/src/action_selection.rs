//! Choosing a child below a node: the rules every simulation applies on its
//! way down, and the completed-Q pieces the Gumbel rules share.
//!
//! * pUCT (MuZero) at decision nodes over min-max-normalised Q; illegal
//!   actions are never chosen; ties go to the lowest action index.
//! * Chance nodes: argmax p(c) / (N(c) + 1), or a draw from p(c).
//! * Gumbel MuZero interior decision nodes (Danihelka et al., "Policy
//!   improvement by planning with Gumbel", ICLR 2022): the deterministic rule
//!   `argmax softmax(logits + sigma(q)) - N(a) / (1 + sum N)`.
//!
//! `sigma(q) = (maxvisit_init + max N) * value_scale * rescaled(q)`, where
//! unvisited actions are completed with the mixed value (the node's network
//! value mixed with the prior-weighted mean Q of the visited actions) and the
//! completed Qs are rescaled to [0, 1] by their own min and max (over all A
//! actions, as DeepMind's mctx does).

use rand::Rng;

use crate::config::GumbelConfig;
use crate::tree::{Forest, UNEXPANDED};

/// Prior probabilities as logits; an action with no mass gets -inf.
#[inline]
pub(crate) fn logit(p: f64) -> f64 {
    if p > 0.0 {
        p.ln()
    } else {
        f64::NEG_INFINITY
    }
}

impl Forest {
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
    pub(crate) fn select_action(&self, b: usize, node: usize) -> usize {
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
    pub(crate) fn select_outcome(&mut self, b: usize, node: usize) -> usize {
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
        let scale = (g.gumbel_maxvisit_init + max_visits) * g.gumbel_value_scale;
        for x in q.iter_mut() {
            *x = scale * (*x - lo) / (hi - lo).max(1e-8);
        }
        (visits, q)
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
}
