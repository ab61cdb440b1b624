//! Reading a finished search: root visit counts and values, the visit
//! policy, chosen actions and a JSON view of a tree.

use rand::Rng;

use crate::error::{fail, SearchError};
use crate::tree::{Forest, DECISION, ROOT, UNEXPANDED};

impl Forest {
    fn check_complete(&self) -> Result<(), SearchError> {
        if !self.ready {
            return fail("no search has been run: call reset() first".into());
        }
        let waiting = self.leaves.iter().filter(|l| l.is_some()).count();
        if waiting > 0 {
            return fail(format!("{waiting} selected leaves were not answered: keep calling select() until it returns (0, 0)"));
        }
        Ok(())
    }

    /// Root visit counts per action, [B, A].
    pub fn root_visit_counts(&self, out: &mut [u32]) -> Result<(), SearchError> {
        self.check_complete()?;
        let a = self.cfg.num_actions;
        for b in 0..self.batch_size {
            let root = self.at(b, ROOT);
            for i in 0..a {
                let c = self.child[root * self.width + i];
                out[b * a + i] = if c == UNEXPANDED { 0 } else { self.visits[self.at(b, c as usize)] };
            }
        }
        Ok(())
    }

    /// Mean backed-up value of each root, [B].
    pub fn root_values(&self, out: &mut [f64]) -> Result<(), SearchError> {
        self.check_complete()?;
        for (b, o) in out.iter_mut().enumerate() {
            let root = self.at(b, ROOT);
            *o = self.value_sum[root] / self.visits[root] as f64;
        }
        Ok(())
    }

    /// Visit policy at a temperature, [B, A]. Temperature 0 is argmax (ties to
    /// the lowest action). Before any simulation the (legal) prior is used.
    pub fn visit_policy(&self, temperature: f64, out: &mut [f64]) -> Result<(), SearchError> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return fail(format!("temperature must be finite and >= 0, got {temperature}"));
        }
        let a = self.cfg.num_actions;
        let mut counts = vec![0u32; self.batch_size * a];
        self.root_visit_counts(&mut counts)?;
        for b in 0..self.batch_size {
            let row = &counts[b * a..(b + 1) * a];
            let o = &mut out[b * a..(b + 1) * a];
            let total: u32 = row.iter().sum();
            if total == 0 {
                let root = self.at(b, ROOT);
                o.copy_from_slice(&self.prior[root * self.width..root * self.width + a]);
                continue;
            }
            if temperature == 0.0 {
                let mut best = 0;
                for i in 1..a {
                    if row[i] > row[best] {
                        best = i;
                    }
                }
                o.fill(0.0);
                o[best] = 1.0;
                continue;
            }
            let max = *row.iter().max().unwrap() as f64;
            let mut sum = 0.0;
            for i in 0..a {
                // Scale by the max count first so large counts and small
                // temperatures do not overflow.
                o[i] = if row[i] == 0 { 0.0 } else { (row[i] as f64 / max).powf(1.0 / temperature) };
                sum += o[i];
            }
            for x in o.iter_mut() {
                *x /= sum;
            }
        }
        Ok(())
    }

    /// Chosen action per root: argmax of visits at temperature 0, otherwise a
    /// draw from the visit policy with the root's own generator.
    pub fn choose_actions(&mut self, temperature: f64, out: &mut [i64]) -> Result<(), SearchError> {
        let a = self.cfg.num_actions;
        let mut policy = vec![0.0f64; self.batch_size * a];
        self.visit_policy(temperature, &mut policy)?;
        for b in 0..self.batch_size {
            let row = &policy[b * a..(b + 1) * a];
            let mut choice = 0;
            if temperature == 0.0 {
                for i in 1..a {
                    if row[i] > row[choice] {
                        choice = i;
                    }
                }
            } else {
                let u: f64 = self.rngs[b].random::<f64>();
                let mut acc = 0.0;
                choice = usize::MAX;
                for (i, &p) in row.iter().enumerate() {
                    acc += p;
                    if u < acc && p > 0.0 {
                        choice = i;
                        break;
                    }
                }
                if choice == usize::MAX {
                    choice = (0..a).rev().find(|&i| row[i] > 0.0).unwrap_or(0);
                }
            }
            out[b] = choice as i64;
        }
        Ok(())
    }

    fn check_gumbel(&self) -> Result<(), SearchError> {
        self.check_complete()?;
        if self.cfg.gumbel.is_none() {
            return fail("this search selects by pUCT: improved_policy and gumbel_actions need root_selection='gumbel'".into());
        }
        Ok(())
    }

    /// Gumbel search: the improved policy softmax(logits + sigma(completed q))
    /// at each root, the policy target, [B, A].
    pub fn improved_policy(&self, out: &mut [f64]) -> Result<(), SearchError> {
        self.check_gumbel()?;
        let a = self.cfg.num_actions;
        for b in 0..self.batch_size {
            let (_, sigma_q) = self.completed_q(b, ROOT);
            out[b * a..(b + 1) * a].copy_from_slice(&self.improved_probs(b, ROOT, &sigma_q));
        }
        Ok(())
    }

    /// Gumbel search: the action to act with at each root, [B] (the root's
    /// Gumbel noise is the exploration; without noise it is deterministic).
    pub fn gumbel_actions(&self, out: &mut [i64]) -> Result<(), SearchError> {
        self.check_gumbel()?;
        for (b, o) in out.iter_mut().enumerate() {
            *o = self.gumbel_final_action(b) as i64;
        }
        Ok(())
    }

    /// A depth-limited JSON rendering of one root's tree, for people.
    pub fn tree_json(&self, b: usize, max_depth: usize) -> Result<String, SearchError> {
        self.check_complete()?;
        if b >= self.batch_size {
            return fail(format!("root {b} out of range for batch_size {}", self.batch_size));
        }
        let mut s = String::new();
        self.node_json(b, ROOT, 0, max_depth, &mut s);
        Ok(s)
    }

    fn node_json(&self, b: usize, node: usize, depth: usize, max_depth: usize, s: &mut String) {
        let idx = self.at(b, node);
        let decision = self.kind[idx] == DECISION;
        let visits = self.visits[idx];
        let value = if visits > 0 { self.value_sum[idx] / visits as f64 } else { 0.0 };
        s.push_str(&format!(
            "{{\"node\":{node},\"kind\":\"{}\",\"visits\":{visits},\"value\":{value},\"reward\":{}",
            if decision { "decision" } else { "chance" },
            self.reward[idx]
        ));
        if depth < max_depth {
            let (label, k) = if decision { ("action", self.cfg.num_actions) } else { ("outcome", self.cfg.num_outcomes) };
            s.push_str(",\"children\":[");
            let mut first = true;
            for i in 0..k {
                let c = self.child[idx * self.width + i];
                if c == UNEXPANDED {
                    continue;
                }
                if !first {
                    s.push(',');
                }
                first = false;
                s.push_str(&format!("{{\"{label}\":{i},\"prior\":{},\"child\":", self.prior[idx * self.width + i]));
                self.node_json(b, c as usize, depth + 1, max_depth, s);
                s.push('}');
            }
            s.push(']');
        }
        s.push('}');
    }

    /// Simulations started by the root that started the fewest.
    pub fn simulations_started(&self) -> usize {
        self.sims_done.iter().copied().min().unwrap_or(0)
    }
}
