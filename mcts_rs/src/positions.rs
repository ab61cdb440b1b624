//! Position rules: which position each action leads to from each position.
//!
//! A trade's position is not a latent: it follows exactly from the root's
//! position and the actions on the path (chance outcomes move prices, not
//! positions). With these rules the search masks illegal actions at every
//! decision node, not only at the root (BUY while long, CLOSE while flat).

use crate::error::SearchError;

/// Marks an action that is not allowed from a position.
pub const ILLEGAL: i64 = -1;

#[derive(Clone, Debug, PartialEq)]
pub struct PositionRules {
    num_actions: usize,
    num_positions: usize,
    /// [A, P]: index of the position after action a from position p, or ILLEGAL.
    next: Vec<i64>,
}

impl PositionRules {
    /// `next` is row-major [num_actions, num_positions]. Every entry is a
    /// position index or ILLEGAL, and every position allows some action.
    pub fn new(num_actions: usize, num_positions: usize, next: Vec<i64>) -> Result<PositionRules, SearchError> {
        if num_positions == 0 || next.len() != num_actions * num_positions {
            return Err(SearchError(format!(
                "position_transitions must have shape ({num_actions}, P) with P >= 1, got {} entries",
                next.len()
            )));
        }
        if let Some(bad) = next.iter().find(|&&n| n != ILLEGAL && !(0..num_positions as i64).contains(&n)) {
            return Err(SearchError(format!(
                "position_transitions entries must be a position index in 0..{num_positions} or {ILLEGAL}, got {bad}"
            )));
        }
        let rules = PositionRules { num_actions, num_positions, next };
        if let Some(p) = (0..num_positions).find(|&p| !(0..num_actions).any(|a| rules.allows(a, p))) {
            return Err(SearchError(format!("position_transitions allow no action from position {p}")));
        }
        Ok(rules)
    }

    pub fn num_positions(&self) -> usize {
        self.num_positions
    }

    pub fn allows(&self, action: usize, position: usize) -> bool {
        self.next[action * self.num_positions + position] != ILLEGAL
    }

    /// The position after a legal action.
    pub fn next(&self, action: usize, position: usize) -> usize {
        debug_assert!(self.allows(action, position));
        self.next[action * self.num_positions + position] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // HOLD, BUY, SELL, CLOSE over positions (short, flat, long).
    fn hold_buy_sell_close() -> PositionRules {
        PositionRules::new(4, 3, vec![0, 1, 2, -1, 2, -1, -1, 0, -1, 1, -1, 1]).unwrap()
    }

    #[test]
    fn follows_the_table() {
        let r = hold_buy_sell_close();
        assert!(r.allows(1, 1) && r.next(1, 1) == 2, "BUY from flat is long");
        assert!(!r.allows(1, 2), "no BUY while long");
        assert!(!r.allows(3, 1), "no CLOSE while flat");
        assert_eq!(r.next(3, 0), 1, "CLOSE from short is flat");
    }

    #[test]
    fn bad_tables_are_rejected() {
        assert!(PositionRules::new(2, 2, vec![0, 1, 1]).is_err(), "wrong size");
        assert!(PositionRules::new(2, 2, vec![0, 2, 1, 0]).is_err(), "index out of range");
        assert!(PositionRules::new(2, 2, vec![0, -1, 1, -1]).is_err(), "position 1 allows nothing");
        assert!(PositionRules::new(2, 0, vec![]).is_err(), "no positions");
    }
}
