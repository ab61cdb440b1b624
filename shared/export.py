"""Export a model's networks to Core ML for Apple silicon.

python -m shared.export coreml --checkpoint <file | promoted/CURRENT | checkpoint dir> --out <dir>

Four ML-program packages (float32, batch 1..64, fixed names):
  representation.mlpackage  temporal [B, 32, 9], static [B, 6]            -> hidden_state [B, 256]
  afterstate.mlpackage      hidden_state [B, 256], action_one_hot [B, 4]
                            -> afterstate [B, 256], chance_logits [B, 3], afterstate_value_logits [B, 601]
  dynamics.mlpackage        afterstate [B, 256], outcome_one_hot [B, 3]    -> next_state [B, 256], reward [B]
  prediction.mlpackage      hidden_state [B, 256]                          -> policy_logits [B, 4], value_logits [B, 601]
Actions and outcomes go in one-hot so no integer op is needed on the device.
Each package's metadata holds the feature spec version, the model version
(episode and sha256 of the checkpoint) and the feature names; manifest.json
lists the files with their sha256. A checkpoint from another feature spec or
architecture is refused with the reason.

python -m shared.export onnx --checkpoint <...> --out <dir> exports a challenger candidate (family tft;
dt) to ONNX, checked in onnxruntime against PyTorch, and to Core ML where coremltools converts it:
shared/export_onnx.py. MuZero candidates export with `coreml`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from shared.core.feature_spec import FEATURE_SPEC_VERSION, TEMPORAL_FEATURES
from shared.export_onnx import MissingOnnxPackages, export_candidate, sha256_of
from shared.model import MuZeroNetworks
from shared.volume.candidates import Candidate, CandidateError, load_candidate
from shared.volume.promotion import read_current

MAX_BATCH = 64


class _Representation(nn.Module):
    def __init__(self, m: MuZeroNetworks) -> None:
        super().__init__()
        self.m = m

    def forward(self, temporal: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.m.represent(temporal, static)


class _Afterstate(nn.Module):
    def __init__(self, m: MuZeroNetworks) -> None:
        super().__init__()
        self.m = m

    def forward(self, state: torch.Tensor, action_one_hot: torch.Tensor):
        after = self.m.afterstate_net.forward_one_hot(state, action_one_hot)
        return after, self.m.chance_head(after), self.m.afterstate_value_head(after)


class _Dynamics(nn.Module):
    def __init__(self, m: MuZeroNetworks) -> None:
        super().__init__()
        self.m = m

    def forward(self, afterstate: torch.Tensor, outcome_one_hot: torch.Tensor):
        state = self.m.dynamics_net.forward_one_hot(afterstate, outcome_one_hot)
        return state, self.m.reward_head(state).squeeze(-1)


class _Prediction(nn.Module):
    def __init__(self, m: MuZeroNetworks) -> None:
        super().__init__()
        self.m = m

    def forward(self, state: torch.Tensor):
        return self.m.predict(state)


@dataclass(frozen=True)
class PackageSpec:
    name: str
    module: type[nn.Module]
    inputs: tuple[tuple[str, tuple[int, ...]], ...]    # per-row shapes (without the batch dimension)
    outputs: tuple[str, ...]


def package_specs(m: MuZeroNetworks) -> list[PackageSpec]:
    c = m.config
    return [
        PackageSpec("representation", _Representation,
                    (("temporal", (c.window_bars, c.temporal_features)), ("static", (c.static_features,))),
                    ("hidden_state",)),
        PackageSpec("afterstate", _Afterstate, (("hidden_state", (c.hidden,)), ("action_one_hot", (c.num_actions,))),
                    ("afterstate", "chance_logits", "afterstate_value_logits")),
        PackageSpec("dynamics", _Dynamics, (("afterstate", (c.hidden,)), ("outcome_one_hot", (c.num_outcomes,))),
                    ("next_state", "reward")),
        PackageSpec("prediction", _Prediction, (("hidden_state", (c.hidden,)),), ("policy_logits", "value_logits")),
    ]


def example_inputs(spec: PackageSpec, batch: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, shape in spec.inputs:
        if name.endswith("one_hot"):
            index = torch.randint(0, shape[0], (batch,), generator=g)
            out.append(nn.functional.one_hot(index, shape[0]).float())
        else:
            out.append(torch.randn(batch, *shape, generator=g))
    return out


def resolve_checkpoint(path: Path) -> tuple[Path, str | None]:
    """A checkpoint file, a promoted/CURRENT pointer, or a volume whose
    promoted/CURRENT names the model; returns (file, expected sha256)."""
    path = Path(path)
    if path.is_dir() or path.name == "CURRENT":
        volume = path if path.is_dir() else path.parent.parent
        pointer = read_current(volume)
        if pointer is None:
            raise FileNotFoundError(f"{volume} has no promoted/CURRENT: nothing promoted yet")
        return volume / "promoted" / pointer.model, pointer.sha256
    return path, None


PARITY_TOLERANCE = 1e-4  # absolute, float32 end to end


def coreml_runtime_available() -> bool:
    """Core ML predictions need macOS; elsewhere only the program can be checked."""
    return sys.platform == "darwin"


def verify_package(mlmodel, spec: PackageSpec, module: nn.Module) -> str:
    """Check a converted package against its PyTorch module.

    On macOS: run both on recorded inputs (batch 3) and compare outputs within
    PARITY_TOLERANCE. Elsewhere: the program's input names and shapes, output
    names, and each output's trailing shape against the module's real output.
    Returns what was checked ("numerics" or "program"); raises on a mismatch."""
    inputs = example_inputs(spec, 3, seed=1)
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    if coreml_runtime_available():
        got = mlmodel.predict({name: x.numpy() for (name, _), x in zip(spec.inputs, inputs)})
        for name, want in zip(spec.outputs, expected):
            diff = float(np.abs(np.asarray(got[name]).reshape(want.shape) - want.numpy()).max())
            if diff > PARITY_TOLERANCE:
                raise ValueError(f"{spec.name}.{name} differs from PyTorch by {diff:.2e}")
        return "numerics"
    main = mlmodel._mil_program.functions["main"]
    if list(main.inputs) != [name for name, _ in spec.inputs]:
        raise ValueError(f"{spec.name}: program inputs {list(main.inputs)} != {[n for n, _ in spec.inputs]}")
    for (name, shape), var in zip(spec.inputs, main.inputs.values()):
        if tuple(var.shape[1:]) != shape:
            raise ValueError(f"{spec.name}.{name}: program shape {var.shape} != (B, {shape})")
    outputs = main.outputs
    if [v.name for v in outputs] != list(spec.outputs):
        raise ValueError(f"{spec.name}: program outputs {[v.name for v in outputs]} != {list(spec.outputs)}")
    for var, want in zip(outputs, expected):
        if tuple(var.shape[1:]) != tuple(want.shape[1:]):
            raise ValueError(f"{spec.name}.{var.name}: program shape {var.shape} != torch {tuple(want.shape)}")
    return "program"


def export_coreml(candidate: Candidate, out: Path, *, progress: bool = True) -> dict:
    import coremltools as ct

    if candidate.family != "muzero":
        raise ValueError(f"{candidate.path.name} is a {candidate.family} candidate: its model exports with the "
                         "onnx subcommand (with Core ML where coremltools converts it)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = candidate.model.eval().to("cpu")
    version = candidate.version
    files = []
    for spec in tqdm(package_specs(model), desc="coreml export", unit="package", disable=not progress):
        module = spec.module(model).eval()
        example = example_inputs(spec, 2)  # a batch of 1 would be specialised to a constant by torch.export
        with torch.no_grad():
            module(*example)  # warm the TCN's index cache so the export is one graph
            # torch.export (what coremltools recommends): batch is a symbolic dimension, 1..MAX_BATCH
            batch_dim = torch.export.Dim("batch", min=1, max=MAX_BATCH)
            exported = torch.export.export(module, tuple(example), dynamic_shapes=tuple({0: batch_dim} for _ in example))
            exported = exported.run_decompositions({})
        batch = ct.RangeDim(lower_bound=1, upper_bound=MAX_BATCH, default=1)
        mlmodel = ct.convert(
            exported,
            inputs=[ct.TensorType(name=name, shape=(batch, *shape), dtype=np.float32) for name, shape in spec.inputs],
            outputs=[ct.TensorType(name=name, dtype=np.float32) for name in spec.outputs],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.macOS13,
        )
        checked = verify_package(mlmodel, spec, module)
        mlmodel.short_description = f"micro-muzero {spec.name} network ({version})"
        mlmodel.version = version
        meta = mlmodel.user_defined_metadata
        meta["feature_spec_version"] = FEATURE_SPEC_VERSION
        meta["model_version"] = version
        meta["episode"] = str(candidate.episode)
        meta["checkpoint_sha256"] = candidate.sha256
        meta["feature_names"] = ",".join(TEMPORAL_FEATURES)
        target = out / f"{spec.name}.mlpackage"
        mlmodel.save(str(target))
        files.append({"file": target.name, "sha256": sha256_of(target), "verified": checked,
                      "inputs": {n: [None, *s] for n, s in spec.inputs}, "outputs": list(spec.outputs)})
    manifest = {
        "model_version": version, "episode": candidate.episode, "checkpoint_sha256": candidate.sha256,
        "feature_spec_version": FEATURE_SPEC_VERSION, "feature_names": list(TEMPORAL_FEATURES),
        "network_config": model.config.to_dict(), "max_batch": MAX_BATCH,
        "exported_at": datetime.now(timezone.utc).isoformat(), "packages": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    coreml = sub.add_parser("coreml", help="export the networks as Core ML packages")
    coreml.add_argument("--checkpoint", type=Path, required=True,
                        help="a checkpoint file, promoted/CURRENT, or the checkpoint volume")
    coreml.add_argument("--out", type=Path, required=True)
    coreml.add_argument("--quiet", action="store_true")
    onnx = sub.add_parser("onnx", help="export a challenger (tft, dt) to ONNX, checked in onnxruntime (shared/export_onnx.py)")
    onnx.add_argument("--checkpoint", type=Path, required=True,
                      help="a checkpoint file, promoted/CURRENT, or the checkpoint volume")
    onnx.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        path, sha = resolve_checkpoint(args.checkpoint)
        candidate = load_candidate(path, sha)
        if args.command == "onnx":
            entry = export_candidate(candidate, args.out)
            coreml = entry["coreml"] if isinstance(entry["coreml"], str) else entry["coreml"]["file"]
            print(f"exported {entry['file']} of {entry['metadata']['model_version']} to {args.out} (Core ML: {coreml})")
            return 0
        manifest = export_coreml(candidate, args.out, progress=not args.quiet)
    except (CandidateError, FileNotFoundError, ValueError, MissingOnnxPackages) as error:
        print(f"export: {error}", file=sys.stderr)
        return 2
    print(f"exported {len(manifest['packages'])} packages of {manifest['model_version']} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
