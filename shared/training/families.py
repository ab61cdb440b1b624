"""Which trainer trains each model family (TRAINING_MODEL): the one table the service and the
arena benchmark read."""

from __future__ import annotations

from shared.training.forecaster import ForecasterTrainer
from shared.training.strategist import StrategistTrainer
from shared.training.trainer import Trainer

AnyTrainer = Trainer | ForecasterTrainer | StrategistTrainer
TRAINERS: dict[str, type[AnyTrainer]] = {"muzero": Trainer, "tft": ForecasterTrainer, "dt": StrategistTrainer}
