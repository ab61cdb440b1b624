"""Training. In: a feature set and a TrainingConfig. Out: checkpoints on the volume. Self-play
(lockstep episodes searched by shared.search) -> replay -> learner -> checkpoint, looped by trainer."""
