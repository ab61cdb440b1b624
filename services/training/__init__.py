"""The training service: self-play + learner + checkpoints, and its HTTP face."""
