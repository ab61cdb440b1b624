//! Sequential Halving's schedule for the Gumbel root (Danihelka et al. 2022,
//! as DeepMind's mctx computes it): which visit count the root action of each
//! simulation must have, so that the considered actions are tried evenly and
//! the better half goes on each round.

/// The visit count each simulation's root action must have, for `considered`
/// actions and `simulations` simulations.
pub fn considered_visit_sequence(considered: usize, simulations: usize) -> Vec<u32> {
    if considered <= 1 {
        return (0..simulations as u32).collect();
    }
    let log2max = (considered as f64).log2().ceil() as usize;
    let mut sequence = Vec::with_capacity(simulations + considered);
    let mut visits = vec![0u32; considered];
    let mut num_considered = considered;
    while sequence.len() < simulations {
        let extra = (simulations / (log2max * num_considered)).max(1);
        for _ in 0..extra {
            sequence.extend_from_slice(&visits[..num_considered]);
            for v in visits[..num_considered].iter_mut() {
                *v += 1;
            }
        }
        num_considered = (num_considered / 2).max(2);
    }
    sequence.truncate(simulations);
    sequence
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
