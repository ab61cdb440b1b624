"""Resume: training/latest.pt holds the model, the optimiser, the counters and every random
generator, written after each iteration; a restart continues from it. The episode counter never
goes back: it is at least the newest candidate's on disk, so no candidate name is ever reused."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from shared.core.feature_spec import FEATURE_SPEC_VERSION
from shared.volume.candidates import read_config

if TYPE_CHECKING:  # the trainer imports this module
    from shared.training.trainer import Trainer

log = logging.getLogger("shared.training.trainer")


def resume_payload(trainer: Trainer) -> dict:
    payload = trainer.model_payload()
    payload.update(
        kind="micro-muzero-resume",
        optimizer_state=trainer.learner.optimizer.state_dict(),
        last_checkpoint_episode=trainer.last_checkpoint_episode,
        checkpoints_written=trainer.checkpoints_written,
        numpy_rng=trainer.rng.bit_generator.state,
        torch_rng=torch.get_rng_state(),
    )
    return payload


def restore(trainer: Trainer) -> bool:
    """Load latest.pt into the trainer if there is one; True when it resumed."""
    volume = trainer.volume
    newest_candidate = max((ep for ep, _ in volume.candidates()), default=0)
    if not volume.latest.exists():
        trainer.episode = trainer.last_checkpoint_episode = trainer.saved_episode = newest_candidate
        return False
    state = torch.load(volume.latest, map_location=trainer.device, weights_only=True)  # tensors and plain data only
    if state.get("feature_spec_version") != FEATURE_SPEC_VERSION:
        raise ValueError(f"{volume.latest} was written with feature spec {state.get('feature_spec_version')}, "
                         f"this code uses {FEATURE_SPEC_VERSION}: move it away to start afresh")
    if read_config(state, volume.latest.name).network != trainer.config.network:
        raise ValueError(f"{volume.latest} holds another network architecture; "
                         "move it away or restore the settings it was trained with")
    trainer.model.load_state_dict(state["model_state"])
    trainer.learner.optimizer.load_state_dict(state["optimizer_state"])
    trainer.learner.steps = int(state["learner_steps"])
    trainer.rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    trainer.checkpoints_written = int(state.get("checkpoints_written", 0))
    # never go back: a candidate written after the last resume state still counts
    trainer.episode = trainer.saved_episode = max(int(state["episode"]), newest_candidate)
    trainer.last_checkpoint_episode = max(int(state["last_checkpoint_episode"]), newest_candidate)
    log.info("resumed at episode %d (learner step %d)", trainer.episode, trainer.learner.steps)
    return True
