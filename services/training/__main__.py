"""python -m services.training: the training service on port 8001."""

from __future__ import annotations

import sys

from pydantic import ValidationError


def main() -> int:
    from services.training.config import TrainingSettings

    try:
        settings = TrainingSettings()
    except ValidationError as error:
        print(f"training: bad configuration:\n{error}", file=sys.stderr)
        return 2

    import uvicorn

    from services.training.service import TrainingService, build_app
    from shared.env import EnvConfig
    from shared.features.store import FeatureStoreError, load_feature_set
    from shared.logs import configure_logging
    from shared.model import select_device
    from shared.runtime import tune_process
    from shared.search import SearchConfig
    from shared.trainer import Trainer, TrainingConfig

    log = configure_logging("training", settings.log_level)
    tune_process()
    try:
        features = load_feature_set(settings.db_path, settings.instrument, settings.granularity)
        config = TrainingConfig(
            episodes_per_iteration=settings.episodes_per_iteration,
            checkpoint_interval_episodes=settings.checkpoint_interval_episodes,
            keep_checkpoints=settings.keep_checkpoints,
            learner_steps_per_episode=settings.learner_steps_per_episode,
            min_replay_episodes=settings.episodes_per_iteration,
            seed=settings.seed,
            env=EnvConfig(reward=settings.reward),
            search=SearchConfig(num_simulations=settings.simulations),
        )
        device = select_device(settings.device)
        trainer = Trainer(features, settings.checkpoint_dir, config, device)
    except (FeatureStoreError, ValueError, FileNotFoundError) as error:
        print(f"training: cannot start: {error}", file=sys.stderr)
        return 2
    log.info("starting", extra={"fields": {"device": str(device), "episode": trainer.episode,
                                           "resumed": trainer.resumed, "parameters": trainer.describe()}})
    service = TrainingService(settings, trainer)
    uvicorn.run(build_app(service), host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
