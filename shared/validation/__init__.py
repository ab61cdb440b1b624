"""Validation. In: a candidate file and the feature set's held-out sessions. Out: a report with
Monte Carlo statistics, the baselines' figures and the gate's verdict (promotion is shared.volume's)."""
