//! The search's settings. Every value comes from the caller (the Python
//! binding reads them from `shared.config.SearchConfig`, field by field under
//! the same names); there are no defaults outside the tests.

use crate::error::{fail, SearchError};
use crate::positions::PositionRules;

#[derive(Clone, Debug, PartialEq)]
pub struct SearchConfig {
    pub num_actions: usize,
    pub num_outcomes: usize,
    pub embedding_dim: usize,
    /// Simulations per root; the arena holds `simulations + 1` nodes per tree.
    pub simulations: usize,
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

#[derive(Clone, Debug, PartialEq)]
pub struct GumbelConfig {
    /// Actions considered at the root (k of Gumbel top-k), at least 1.
    pub max_considered_actions: usize,
    /// Scale of the Gumbel noise when noise is on (0: deterministic).
    pub gumbel_scale: f64,
    /// c_scale of sigma(q) = (maxvisit_init + max N) * c_scale * q.
    pub gumbel_value_scale: f64,
    /// c_visit of the same transform.
    pub gumbel_maxvisit_init: f64,
}

impl SearchConfig {
    /// Refuses settings the search cannot run with, naming the setting.
    pub fn check(&self) -> Result<(), SearchError> {
        if self.num_actions < 1 || self.num_outcomes < 1 {
            return fail("num_actions and num_outcomes must be at least 1".into());
        }
        if self.embedding_dim == 0 {
            return fail("embedding_dim must be at least 1".into());
        }
        if self.simulations == 0 {
            return fail("simulations must be at least 1".into());
        }
        if !(self.discount.is_finite() && self.discount > 0.0 && self.discount <= 1.0) {
            return fail(format!("discount must be in (0, 1], got {}", self.discount));
        }
        if !(self.pb_c_base.is_finite() && self.pb_c_base > 0.0 && self.pb_c_init.is_finite()) {
            return fail("pb_c_init must be finite and pb_c_base positive".into());
        }
        if !(self.dirichlet_alpha.is_finite() && self.dirichlet_alpha > 0.0) {
            return fail(format!("dirichlet_alpha must be positive, got {}", self.dirichlet_alpha));
        }
        if !(0.0..=1.0).contains(&self.dirichlet_fraction) {
            return fail(format!("dirichlet_fraction must be in [0, 1], got {}", self.dirichlet_fraction));
        }
        if let Some(g) = &self.gumbel {
            if g.max_considered_actions < 1 {
                return fail("max_considered_actions must be at least 1".into());
            }
            let finite = [g.gumbel_scale, g.gumbel_value_scale, g.gumbel_maxvisit_init]
                .iter()
                .all(|x| x.is_finite() && *x >= 0.0);
            if !finite {
                return fail("gumbel_scale, gumbel_value_scale and gumbel_maxvisit_init must be finite and >= 0".into());
            }
        }
        Ok(())
    }
}

/// Test helper only: a small pUCT search, every field overridable.
#[cfg(test)]
impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            num_actions: 4,
            num_outcomes: 3,
            embedding_dim: 256,
            simulations: 50,
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
