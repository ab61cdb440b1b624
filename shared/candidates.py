"""Loading a candidate or promoted model, verified before anything uses it:
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

from shared.checkpoints import sha256_bytes
from shared.config import NetworkConfig, SearchConfig
from shared.features.spec import FEATURE_SPEC_VERSION, TEMPORAL_FEATURES
from shared.model import MuZeroNetworks


class CandidateError(ValueError):
    """A model file that must not be loaded; `reason` is short and stable."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass
class Candidate:
    path: Path
    sha256: str
    episode: int
    model: MuZeroNetworks
    search_config: SearchConfig
    payload: dict  # everything else the file holds (configs, instrument, ...)
    data: bytes = field(repr=False, default=b"")  # the file's bytes, sha256 as above


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
    spec = payload.get("feature_spec_version")
    if spec != FEATURE_SPEC_VERSION or list(payload.get("feature_names", [])) != list(TEMPORAL_FEATURES):
        raise CandidateError("feature_spec_mismatch",
                             f"{path.name} was built for feature spec {spec}, this system uses {FEATURE_SPEC_VERSION}")
    try:
        config = NetworkConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["network_config"].items()})
        model = MuZeroNetworks(config)
        model.load_state_dict(payload["model_state"])
    except Exception as error:  # noqa: BLE001 - unknown fields, missing or misshapen weights
        raise CandidateError("architecture_mismatch", f"{path.name}: {type(error).__name__}: {error}") from None
    model.eval()
    if device is not None:
        model.to(device)
    # a model keeps the search it was trained with: one saved before Gumbel search existed used pUCT
    search = SearchConfig(**{"root_selection": "puct", **payload.get("search_config", {})})
    return Candidate(path=path, sha256=sha, episode=int(payload.get("episode", -1)), model=model,
                     search_config=search, payload={k: v for k, v in payload.items() if k != "model_state"},
                     data=data)
