"""python -m services.training: the training service on port 8001."""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from services.training.config import TrainingSettings


def build(settings: TrainingSettings, log: logging.Logger) -> FastAPI:
    from services.training.service import TrainingService, build_app
    from shared.config import EnvConfig, ExplorationConfig, NetworkConfig, SearchConfig, TrainingConfig
    from shared.env import ACTION_SPACES
    from shared.features.store import load_feature_set
    from shared.model import select_device
    from shared.trainer import Trainer

    features = load_feature_set(settings.db_path, settings.instrument, settings.granularity)
    config = TrainingConfig(
        episodes_per_iteration=settings.episodes_per_iteration,
        checkpoint_interval_episodes=settings.checkpoint_interval_episodes,
        keep_checkpoints=settings.keep_checkpoints,
        learner_steps_per_episode=settings.learner_steps_per_episode,
        min_replay_episodes=settings.episodes_per_iteration,
        seed=settings.seed,
        env=EnvConfig(reward=settings.reward, action_space=settings.action_space),
        network=NetworkConfig(num_actions=ACTION_SPACES[settings.action_space].num_actions),
        search=SearchConfig(num_simulations=settings.simulations, root_selection=settings.root_selection),
        exploration=ExplorationConfig(epsilon=settings.epsilon),
    )
    device = select_device(settings.device)
    trainer = Trainer(features, settings.checkpoint_dir, config, device)
    log.info("starting", extra={"fields": {"device": str(device), "episode": trainer.episode,
                                           "resumed": trainer.resumed, "parameters": trainer.describe()}})
    return build_app(TrainingService(settings, trainer))


def main() -> int:
    from shared.service_main import run_service

    return run_service("training", TrainingSettings, build)


if __name__ == "__main__":
    sys.exit(main())
