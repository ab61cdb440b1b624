use super::*;
use crate::config::SearchConfig;
use crate::positions::PositionRules;
use crate::roots::RootInputs;

fn forest(b: usize, sims: usize) -> Forest {
    let cfg = SearchConfig { embedding_dim: 2, simulations: sims, ..SearchConfig::default() };
    Forest::new(b, cfg).unwrap()
}

fn reset(f: &mut Forest, legal: &[bool]) {
    let b = f.batch_size;
    let emb = vec![0.5f32; b * 2];
    let priors = vec![0.25f32; b * 4];
    let values = vec![1.0f32; b];
    let seeds: Vec<u64> = (0..b as u64).collect();
    let inputs = RootInputs {
        simulations_this_search: f.cfg.simulations,
        embeddings: &emb,
        priors: &priors,
        values: &values,
        legal,
        positions: None,
        seeds: &seeds,
        add_noise: false,
        gumbel: None,
    };
    f.reset(&inputs).unwrap();
}

/// Answer every requested leaf with a fixed, depth-independent network.
fn answer_requested(f: &mut Forest) {
    let leaves: Vec<_> = f.leaves().to_vec();
    for (b, leaf) in leaves.iter().enumerate() {
        let Some(leaf) = leaf else { continue };
        if !f.requested(b) {
            continue;
        }
        // Outputs differ by root and depth so that roots' trees differ.
        let x = ((b * 7 + leaf.node * 13) % 11) as f32 / 11.0;
        match leaf.kind {
            LeafKind::Afterstate => f.expand_afterstate(b, &[0.1, 0.2], &[0.0, 1.0, x], x - 0.5).unwrap(),
            LeafKind::State => f.expand_state(b, &[0.3, 0.4], &[1.0, x, 0.0, 0.5], 0.2 - x, x).unwrap(),
        }
    }
}

fn run(f: &mut Forest) -> usize {
    let mut steps = 0;
    while f.select().unwrap() != (0, 0) {
        answer_requested(f);
        steps += 1;
    }
    steps
}

#[test]
fn levels_alternate_and_visits_add_up() {
    let mut f = forest(2, 20);
    reset(&mut f, &[true; 8]);
    run(&mut f);
    for b in 0..2 {
        for node in 1..f.num_nodes[b] {
            let idx = f.at(b, node);
            let parent = f.at(b, f.parent[idx] as usize);
            assert_ne!(f.kind[idx], f.kind[parent], "node {node} has the kind of its parent");
        }
    }
    let mut counts = vec![0u32; 8];
    f.root_visit_counts(&mut counts).unwrap();
    assert_eq!(counts[..4].iter().sum::<u32>(), 20);
    assert_eq!(counts[4..].iter().sum::<u32>(), 20);
}

#[test]
fn illegal_actions_never_selected() {
    let mut f = forest(1, 30);
    reset(&mut f, &[true, false, true, false]);
    while f.select().unwrap() != (0, 0) {
        let leaf = f.leaves()[0].unwrap();
        if leaf.parent == ROOT && leaf.kind == LeafKind::Afterstate {
            assert!(leaf.index == 0 || leaf.index == 2);
        }
        answer_requested(&mut f);
    }
    let mut counts = vec![0u32; 4];
    f.root_visit_counts(&mut counts).unwrap();
    assert_eq!(counts[1] + counts[3], 0);
    assert_eq!(counts[0] + counts[2], 30);
}

// HOLD, BUY, SELL, CLOSE over positions (short, flat, long).
fn hold_buy_sell_close() -> PositionRules {
    PositionRules::new(4, 3, vec![0, 1, 2, -1, 2, -1, -1, 0, -1, 1, -1, 1]).unwrap()
}

/// The position at `node`, replayed from the root's along the actions on its path.
fn replayed_position(f: &Forest, rules: &PositionRules, b: usize, node: usize, root_position: usize) -> usize {
    let mut actions = vec![];
    let mut n = node;
    while n != ROOT {
        let parent = f.parent[f.at(b, n)] as usize;
        let pidx = f.at(b, parent);
        if f.kind[pidx] == DECISION {
            let slot = (0..f.width).find(|&s| f.child[pidx * f.width + s] == n as i32).unwrap();
            actions.push(slot);
        }
        n = parent;
    }
    actions.iter().rev().fold(root_position, |p, &a| rules.next(a, p))
}

#[test]
fn position_rules_mask_every_decision_node() {
    let cfg = SearchConfig { embedding_dim: 2, simulations: 200, positions: Some(hold_buy_sell_close()),
                             ..SearchConfig::default() };
    let rules = hold_buy_sell_close();
    let mut f = Forest::new(3, cfg).unwrap();
    // roots: short, flat, long, each with exactly what its position allows
    let legal = [true, false, false, true, true, true, true, false, true, false, false, true];
    let inputs = RootInputs {
        simulations_this_search: 200,
        embeddings: &[0.5; 6],
        priors: &[0.25; 12],
        values: &[1.0; 3],
        legal: &legal,
        positions: Some(&[0, 1, 2]),
        seeds: &[0, 1, 2],
        add_noise: false,
        gumbel: None,
    };
    f.reset(&inputs).unwrap();
    let mut below_root = 0;
    while f.select().unwrap() != (0, 0) {
        for b in 0..3 {
            if let (Some(leaf), true) = (f.leaves()[b], f.requested(b)) {
                if leaf.kind == LeafKind::Afterstate {
                    let position = replayed_position(&f, &rules, b, leaf.parent, b);
                    assert_eq!(position, f.position[f.at(b, leaf.parent)]);
                    assert!(rules.allows(leaf.index, position), "action {} from position {position}", leaf.index);
                    below_root += (leaf.parent != ROOT) as usize;
                }
            }
        }
        answer_requested(&mut f);
    }
    assert!(below_root > 50, "the test must reach below the root ({below_root} expansions)");
    // A decision node's illegal actions hold no prior mass.
    for b in 0..3 {
        for node in 0..f.num_nodes[b] {
            let idx = f.at(b, node);
            if f.kind[idx] == DECISION {
                for a in 0..4 {
                    if !rules.allows(a, f.position[idx]) {
                        assert_eq!(f.prior[idx * f.width + a], 0.0);
                    }
                }
            }
        }
    }
}

#[test]
fn root_positions_must_match_the_rules() {
    let cfg = SearchConfig { embedding_dim: 2, simulations: 5, positions: Some(hold_buy_sell_close()),
                             ..SearchConfig::default() };
    let mut f = Forest::new(1, cfg).unwrap();
    let inputs = |legal: &'static [bool], positions: Option<&'static [i64]>| RootInputs {
        simulations_this_search: 5,
        embeddings: &[0.0, 0.0],
        priors: &[0.25; 4],
        values: &[0.0],
        legal,
        positions,
        seeds: &[1],
        add_noise: false,
        gumbel: None,
    };
    assert!(f.reset(&inputs(&[true, true, true, false], None)).is_err(), "positions missing");
    assert!(f.reset(&inputs(&[true, true, true, false], Some(&[3]))).is_err(), "position out of range");
    assert!(f.reset(&inputs(&[true, true, true, true], Some(&[1]))).is_err(), "CLOSE while flat");
    assert!(f.reset(&inputs(&[true, true, true, false], Some(&[1]))).is_ok());
    let mut plain = forest(1, 5);
    assert!(plain.reset(&inputs(&[true; 4], Some(&[1]))).is_err(), "positions without rules");
}

#[test]
fn unanswered_or_doubly_answered_leaves_are_errors() {
    let mut f = forest(1, 5);
    reset(&mut f, &[true; 4]);
    f.select().unwrap();
    assert!(f.select().is_err(), "select with a requested leaf unanswered must fail");
    let mut counts = vec![0u32; 4];
    assert!(f.root_visit_counts(&mut counts).is_err(), "results with a leaf unanswered must fail");
    f.expand_afterstate(0, &[0.0, 0.0], &[0.0, 0.0, 0.0], 0.0).unwrap();
    assert!(f.expand_afterstate(0, &[0.0, 0.0], &[0.0, 0.0, 0.0], 0.0).is_err());
}

#[test]
fn waiting_leaves_make_fewer_larger_batches() {
    let mut f = forest(16, 50);
    reset(&mut f, &[true; 64]);
    let steps = run(&mut f);
    // Answering both kinds every step would take exactly 50 steps with up
    // to two network calls each; one kind per step takes more steps but
    // fewer calls in all.
    assert!(steps > 50 && steps < 100, "steps = {steps}");
    let mut counts = vec![0u32; 64];
    f.root_visit_counts(&mut counts).unwrap();
    for b in 0..16 {
        assert_eq!(counts[b * 4..b * 4 + 4].iter().sum::<u32>(), 50);
    }
}

#[test]
fn bad_root_inputs_are_rejected() {
    let mut f = forest(1, 5);
    let emb = [0.0f32; 2];
    let inputs = |priors: &'static [f32], legal: &'static [bool], sims: usize| RootInputs {
        simulations_this_search: sims,
        embeddings: &[0.0, 0.0],
        priors,
        values: &[0.0],
        legal,
        positions: None,
        seeds: &[1],
        add_noise: false,
        gumbel: None,
    };
    let _ = emb;
    assert!(f.reset(&inputs(&[0.25; 4], &[false; 4], 5)).is_err(), "all-illegal mask");
    assert!(f.reset(&inputs(&[0.5, -0.1, 0.3, 0.3], &[true; 4], 5)).is_err(), "negative prior");
    assert!(f.reset(&inputs(&[0.5, f32::NAN, 0.3, 0.3], &[true; 4], 5)).is_err(), "NaN prior");
    assert!(f.reset(&inputs(&[0.0, 1.0, 0.0, 0.0], &[true, false, true, true], 5)).is_err(), "no legal mass");
    assert!(f.reset(&inputs(&[0.25; 4], &[true; 4], 6)).is_err(), "more than the config's simulations");
    assert!(f.reset(&inputs(&[0.25; 4], &[true; 4], 5)).is_ok());
}

#[test]
fn tree_json_is_depth_limited() {
    let mut f = forest(1, 10);
    reset(&mut f, &[true; 4]);
    run(&mut f);
    let shallow = f.tree_json(0, 0).unwrap();
    assert!(!shallow.contains("children"));
    let deep = f.tree_json(0, 3).unwrap();
    assert!(deep.contains("\"kind\":\"chance\""));
}

#[test]
fn visit_policy_temperature_zero_is_one_hot() {
    let mut f = forest(1, 10);
    reset(&mut f, &[true; 4]);
    run(&mut f);
    let mut p = vec![0.0; 4];
    f.visit_policy(0.0, &mut p).unwrap();
    assert_eq!(p.iter().filter(|&&x| x == 1.0).count(), 1);
    f.visit_policy(1.0, &mut p).unwrap();
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn all_finite_spots_nan_and_inf() {
    assert!(all_finite(&[0.0, 1.0, -3.5]));
    assert!(!all_finite(&[0.0, f32::NAN]));
    assert!(!all_finite(&[f32::INFINITY, 0.0]));
    assert!(!all_finite(&[0.0, f32::NEG_INFINITY]));
}
