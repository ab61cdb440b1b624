"""The candidate file, written and read here and nowhere else.

Writing: `candidate_payload` is everything validation and live need (the
weights, the one config object, the feature spec, the market), nothing secret;
`serialize` turns it into the bytes a checkpoint holds; `whole_candidate` tells
a complete file from a write cut short.

Loading a candidate or promoted model, verified before anything uses it:
the file exists, its sha256 matches the signal, it loads as tensors and plain
data only (`weights_only=True`: a file another container wrote never runs
pickle code here), it was built for this feature spec, and its weights fit
the architecture it declares. Validation and live load models only through
here; the candidate keeps the bytes it was loaded from, so what is promoted
is exactly what was validated."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from shared.config import ACTION_SPACE_SIZES, EnvConfig, SearchConfig, TrainingConfig
from shared.core.errors import StopError
from shared.core.feature_spec import (
    FEATURE_SPEC_VERSION,
    FEATURE_SPECS,
    INDICATORS_SPEC_VERSION,
    POSITION_FEATURES,
    TEMPORAL_FEATURES,
    WARMUP_BARS,
    WINDOW_BARS,
)
from shared.core.instruments import get_instrument
from shared.model import MuZeroNetworks
from shared.model.dt import DecisionTransformer
from shared.model.guardian import TrainedGuardian
from shared.model.tft import TemporalFusionTransformer
from shared.volume.checkpoints import sha256_bytes


class CandidateError(StopError, ValueError):
    """A model file that must not be loaded; `reason` is short and stable."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


# each model family's feature spec (TrainingConfig.model): what its candidates must declare
FAMILY_FEATURE_SPECS = {"muzero": FEATURE_SPEC_VERSION, "tft": INDICATORS_SPEC_VERSION, "dt": INDICATORS_SPEC_VERSION}


def family_model(config: TrainingConfig) -> torch.nn.Module:
    """A fresh model of the family `config.model`, shaped by its config."""
    if config.model == "tft":
        return TemporalFusionTransformer(config.tft)
    if config.model == "dt":
        return DecisionTransformer(config.dt)
    return MuZeroNetworks(config.network)


@dataclass
class Candidate:
    path: Path
    sha256: str
    episode: int
    model: torch.nn.Module  # MuZeroNetworks (family muzero), TemporalFusionTransformer (tft), DecisionTransformer (dt)
    config: TrainingConfig  # the whole configuration it was trained with
    payload: dict  # everything else the file holds (config sources, instrument, ...)
    data: bytes = field(repr=False, default=b"")  # the file's bytes, sha256 as above
    # what validation promoted it on (promoted/CURRENT's metrics; empty for a file not promoted):
    # live's regime guard reads its `regimes`
    promoted_metrics: dict = field(default_factory=dict)
    # the Guardian trained beside it (payload["guardian"]; None: trained without one): its regimes
    guardian: TrainedGuardian | None = None

    @property
    def family(self) -> str:
        """The model family (TrainingConfig.model): muzero plays through the search, tft through its
        forecast rule (shared/model/tft_policy.py), dt through its return-conditioned actions
        (shared/model/dt_policy.py)."""
        return self.config.model

    @property
    def version(self) -> str:
        """The model version a person reads (logs, journal, exports): episode and checkpoint sha256."""
        return f"ep{self.episode:08d}-{self.sha256[:12]}"

    @property
    def search_config(self) -> SearchConfig:
        return self.config.search

    @property
    def env_config(self) -> EnvConfig:
        return self.config.env


CONFIG_VERSION = 1


def config_object(config: TrainingConfig, sources: dict[str, str]) -> dict:
    """What a checkpoint stores under "config": the training config whole, and where each value came from."""
    return {"version": CONFIG_VERSION, "training": config.to_dict(), "sources": dict(sources)}


def migrate_separate_dicts(payload: dict) -> dict:
    """Version 0 (before one config object): network_config, search_config and env_config side by side,
    the simulation count as num_simulations, and no root_selection before Gumbel search (pUCT)."""
    search = dict(payload.get("search_config", {}))
    search.setdefault("root_selection", "puct")
    if "num_simulations" in search:
        search["simulations"] = search.pop("num_simulations")
    search.pop("discount", None)  # derived from replay.discount now; the two were equal
    return {"version": CONFIG_VERSION, "sources": {},
            "training": {"network": payload.get("network_config", {}), "search": search,
                         "env": payload.get("env_config", {})}}


def read_config(payload: dict, name: str) -> TrainingConfig:
    """The candidate's TrainingConfig, after its architecture is checked against this system."""
    stored = payload.get("config") if "config" in payload else migrate_separate_dicts(payload)
    if not isinstance(stored, dict) or stored.get("version") != CONFIG_VERSION or "training" not in stored:
        version = stored.get("version") if isinstance(stored, dict) else "?"
        raise CandidateError("config_mismatch", f"{name}: config version {version}, this system reads {CONFIG_VERSION}")
    training = stored["training"]
    check_architecture(training, name)
    try:
        return TrainingConfig.from_dict(training)
    except Exception as error:  # noqa: BLE001 - a field this code does not know, a value it refuses
        raise CandidateError("config_mismatch", f"{name}: its config does not load here: {error}") from None


def check_architecture(training: dict, name: str) -> None:
    """The network's declared input and output shapes against the feature spec and the action space."""
    network, env = training.get("network", {}), training.get("env", {})
    space = env.get("action_space", "hold_buy_sell_close")
    expected = {"temporal_features": len(TEMPORAL_FEATURES), "static_features": len(POSITION_FEATURES),
                "num_actions": ACTION_SPACE_SIZES.get(space)}
    for key, want in expected.items():
        if key in network and network[key] != want:
            raise CandidateError("architecture_mismatch", f"{name}: its network has {key}={network[key]}, "
                                 f"this system's feature spec and {space} space need {want}")
    if not 1 <= network.get("window_bars", WINDOW_BARS) <= WARMUP_BARS:
        raise CandidateError("architecture_mismatch", f"{name}: its network sees {network['window_bars']} bars, "
                             f"this system's feature warm-up is {WARMUP_BARS}")


CANDIDATE_KIND = "micro-muzero-candidate"


def candidate_payload(model: MuZeroNetworks, config: TrainingConfig, sources: dict[str, str], *, episode: int,
                      learner_steps: int, instruments: tuple[str, ...], granularity: str,
                      bar_phase_minutes: int = 0, guardian: dict | None = None) -> dict:
    """What a candidate holds: everything validation and live need, nothing secret. `model` is
    config.model's family: its feature spec is written with it; `guardian` the Guardian trained
    beside it (shared/training/guardian.py), if any."""
    spec = FAMILY_FEATURE_SPECS[config.model]
    return {**({"guardian": guardian} if guardian else {}),
        "kind": CANDIDATE_KIND,
        "episode": episode,
        "learner_steps": learner_steps,
        "model_state": model.state_dict(),
        "config": config_object(config, sources),
        "feature_spec_version": spec,
        "feature_names": list(FEATURE_SPECS[spec]),
        "instrument": instruments[0],      # what candidates of one instrument always held
        "instruments": list(instruments),  # every instrument the model was trained on
        # the table's entries it was trained with: a process reading another table is refused (check_market)
        "instrument_spec": instrument_spec(instruments[0]),
        "instrument_specs": {name: instrument_spec(name) for name in instruments},
        "granularity": granularity,
        "bar_phase_minutes": bar_phase_minutes,  # where in its period a training bar opens (live checks it)
        "config_hash": config.config_hash(),
    }


MARKET_SPEC_KEYS = ("pip_size", "calendar", "spread_pips", "quote_currency", "unit")


def instrument_spec(name: str) -> dict:
    return {key: getattr(get_instrument(name), key) for key in MARKET_SPEC_KEYS}


def trained_instruments(candidate: Candidate) -> tuple[str, ...]:
    """The instruments a candidate was trained on (one, before models of several instruments)."""
    payload = candidate.payload
    return tuple(payload.get("instruments") or ([payload["instrument"]] if payload.get("instrument") else []))


def check_market(candidate: Candidate, instrument: str, granularity: str) -> None:
    """The candidate trades this market: an instrument it was trained on, its pip size, calendar and unit as
    this process's instrument table has them (MICRO_INSTRUMENT_TABLE may differ between processes),
    this bar size. A model of several instruments trades any of them."""
    name = candidate.path.name
    trades = trained_instruments(candidate)
    if trades and instrument not in trades:
        raise CandidateError("instrument_mismatch", f"{name} trades {', '.join(trades)}, this service {instrument}")
    specs = candidate.payload.get("instrument_specs") or {instrument: candidate.payload.get("instrument_spec") or {}}
    spec, here = specs.get(instrument) or {}, get_instrument(instrument)
    if spec and "unit" not in spec:  # saved before units: everything was in pips
        spec = {**spec, "unit": "pips"}
    for key in ("pip_size", "calendar", "unit"):  # the spread is a cost setting: another one may be intended
        if key in spec and spec[key] != getattr(here, key):
            raise CandidateError("instrument_mismatch", f"{name} was trained with {instrument}'s {key} {spec[key]}, "
                                 f"this service's instrument table says {getattr(here, key)} (MICRO_INSTRUMENT_TABLE)")
    bars = candidate.payload.get("granularity") or "M1"  # candidates from before bar sizes were M1
    if bars != granularity:
        raise CandidateError("granularity_mismatch", f"{name} was trained on {bars} bars, this service trades {granularity}")


def serialize(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def whole_candidate(data: bytes) -> dict | None:
    """A candidate file's payload (tensors and plain data only), or None if it does not load."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure: not a whole candidate
        return None
    return payload if isinstance(payload, dict) and payload.get("kind") == CANDIDATE_KIND else None


def load_candidate(path: Path, expected_sha256: str | None = None, device: torch.device | None = None) -> Candidate:
    path = Path(path)
    if not path.is_file():
        raise CandidateError("missing", f"{path} does not exist")
    data = path.read_bytes()
    sha = sha256_bytes(data)
    if expected_sha256 is not None and sha != expected_sha256:
        raise CandidateError("sha_mismatch", f"{path.name} has sha256 {sha[:12]}..., the signal says {expected_sha256[:12]}...")
    try:
        payload = torch.load(io.BytesIO(data), map_location=device or "cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise CandidateError("corrupt", f"{path.name} cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or "model_state" not in payload:
        raise CandidateError("corrupt", f"{path.name} is not a micro-muzero checkpoint")
    config = read_config(payload, path.name)
    spec, wanted = payload.get("feature_spec_version"), FAMILY_FEATURE_SPECS[config.model]
    if spec != wanted or list(payload.get("feature_names", [])) != list(FEATURE_SPECS[wanted]):
        raise CandidateError("feature_spec_mismatch", f"{path.name} was built for feature spec {spec}, this system's "
                                                      f"{config.model} models use {wanted}")
    try:
        model = family_model(config)
        model.load_state_dict(payload["model_state"])
    except Exception as error:  # noqa: BLE001 - unknown fields, missing or misshapen weights
        raise CandidateError("architecture_mismatch", f"{path.name}: {type(error).__name__}: {error}") from None
    model.eval()
    if device is not None:
        model.to(device)
    try:
        guardian = TrainedGuardian.of(payload)
    except Exception as error:  # noqa: BLE001 - a Guardian that does not load is a file not to trade on
        raise CandidateError("architecture_mismatch", f"{path.name}: its Guardian: {type(error).__name__}: {error}") from None
    return Candidate(path=path, sha256=sha, episode=int(payload.get("episode", -1)), model=model,
                     config=config, payload={k: v for k, v in payload.items() if k not in ("model_state", "guardian")},
                     data=data, guardian=guardian)
