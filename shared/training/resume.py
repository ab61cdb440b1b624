"""Resume: training/latest.pt holds the model, the optimiser, the counters and every random generator,
written after each iteration; a restart continues from it. The episode counter never goes back: it is
at least the newest candidate's on disk, so no candidate name is ever reused."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from shared.config import NetworkConfig
from shared.core.feature_spec import FEATURE_SPEC_VERSION
from shared.training.averaging import WeightAverage
from shared.training.learner import Learner
from shared.volume.candidates import read_config
from shared.volume.checkpoints import CheckpointDir

log = logging.getLogger("shared.training.trainer")


@dataclass(frozen=True)
class Counters:
    episode: int                  # collected and saved: where the trainer goes on
    last_checkpoint_episode: int
    checkpoints_written: int
    guardian: dict | None = None  # the run's trained Guardian (shared/training/guardian.py), once there is one


def resume_payload(candidate: dict, learner: Learner, rng: np.random.Generator, counters: Counters,
                   average: WeightAverage | None = None) -> dict:
    """latest.pt: the candidate's payload (with the learner's own weights) and what a restart needs
    beyond it, the weight average among it when there is one."""
    return {
        **candidate,
        **({"weight_average": average.state_dict()} if average is not None else {}),
        "kind": "micro-muzero-resume",
        "optimizer_state": learner.optimizer.state_dict(),
        "last_checkpoint_episode": counters.last_checkpoint_episode,
        "checkpoints_written": counters.checkpoints_written,
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }


def restore(volume: CheckpointDir, learner: Learner, rng: np.random.Generator, network: NetworkConfig,
            device: torch.device, average: WeightAverage | None = None) -> tuple[Counters, bool]:
    """Load latest.pt into the learner's model and optimiser, into `rng` and into `average` (when
    the run keeps one), if there is one. Returns the counters to go on from and whether it resumed."""
    newest_candidate = max((ep for ep, _ in volume.candidates()), default=0)
    if not volume.latest.exists():
        return Counters(newest_candidate, newest_candidate, 0), False
    state = torch.load(volume.latest, map_location=device, weights_only=True)  # tensors and plain data only
    if state.get("feature_spec_version") != FEATURE_SPEC_VERSION:
        raise ValueError(f"{volume.latest} was written with feature spec {state.get('feature_spec_version')}, "
                         f"this code uses {FEATURE_SPEC_VERSION}: move it away to start afresh")
    if read_config(state, volume.latest.name).network != network:
        raise ValueError(f"{volume.latest} holds another network architecture; "
                         "move it away or restore the settings it was trained with")
    learner.model.load_state_dict(state["model_state"])
    learner.optimizer.load_state_dict(state["optimizer_state"])
    learner.steps = int(state["learner_steps"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    if average is not None:
        if "weight_average" in state:
            average.load_state_dict(state["weight_average"])
        else:  # the setting was turned on for this restart: the average starts from the weights it resumed
            average.reset(learner.model)
            log.info("%s holds no weight average: it starts from the resumed weights", volume.latest.name)
    # never go back: a candidate written after the last resume state still counts
    counters = Counters(episode=max(int(state["episode"]), newest_candidate),
                        last_checkpoint_episode=max(int(state["last_checkpoint_episode"]), newest_candidate),
                        checkpoints_written=int(state.get("checkpoints_written", 0)),
                        guardian=state.get("guardian"))
    log.info("resumed at episode %d (learner step %d)", counters.episode, learner.steps)
    return counters, True
