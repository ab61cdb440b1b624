//! Starting a search: the root inputs, their checks, and the root noise
//! (Dirichlet for pUCT, Gumbel for the Gumbel root).

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use rand_pcg::Pcg64Mcg;

use crate::error::{fail, SearchError};
use crate::seq_halving::considered_visit_sequence;
use crate::tree::{Forest, DECISION, NO_PARENT, ROOT, UNEXPANDED};

/// Root inputs for one search.
pub struct RootInputs<'a> {
    /// Simulations per root for this search (at most the config's simulations).
    pub simulations_this_search: usize,
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

fn check_finite(values: &[f32], what: &str, row_len: usize) -> Result<(), SearchError> {
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return fail(format!("{what} contains a non-finite value (NaN or inf) in row {}", pos / row_len.max(1)));
    }
    Ok(())
}

impl Forest {
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
        if inp.simulations_this_search == 0 || inp.simulations_this_search > self.cfg.simulations {
            return fail(format!(
                "simulations_this_search must be in 1..={} (the config's simulations), got {}",
                self.cfg.simulations, inp.simulations_this_search
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
        self.simulations_this_search = inp.simulations_this_search;
        self.sims_done.fill(0);
        self.root_gumbel.fill(0.0);
        if let Some(g) = &self.cfg.gumbel {
            if self.halving.first().map(|row| row.len()) != Some(inp.simulations_this_search) {
                self.halving = (0..=g.max_considered_actions.min(a))
                    .map(|k| considered_visit_sequence(k, inp.simulations_this_search))
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
}
