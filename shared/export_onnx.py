"""Export the challenger models to ONNX, checked in onnxruntime, and to Core ML where coremltools converts.

python -m shared.export onnx --checkpoint <file | promoted/CURRENT | checkpoint dir> --out <dir>

One file per model, float32, the batch dimension dynamic ("batch"), the rest fixed by the config:
  tft.onnx               observed [B, E, F_obs], known [B, D, F_known]
                         -> quantiles [B, D, Q], observed_weights [B, E, F_obs], known_weights [B, D, F_known],
                            attention [B, D, E + D]                                  (TemporalFusionTransformer)
  dt.onnx                returns_to_go [B, K, 1], states [B, K, S], actions [B, K] int64, mask [B, K] bool
                         -> logits [B, K, A]   (DecisionTransformer; K = context_steps, windows left-padded)
  guardian_encoder.onnx  windows [B, W, F] -> mu [B, L], logvar [B, L]              (RegimeVAE.encode)

Path: torch.export (non-strict) once per model; that program goes to the ONNX exporter
(torch.onnx.export, dynamo) and to coremltools. Each ONNX file is then loaded by onnxruntime
(CPUExecutionProvider) and run against the PyTorch model (eval mode) on fresh random inputs of
batch sizes other than the export's: every output must satisfy
max |onnx - torch| <= RTOL * max |torch| + ATOL, else OnnxMismatch names the model, the output and
the difference. Core ML (ML program, float32) is converted only (it cannot run on Linux); a model
coremltools does not convert is recorded as "not converted: <reason>" rather than failing the export.
manifest.json beside the files lists each model: file, sha256, opset, inputs and outputs with their
shapes and dtypes, the checked differences, the Core ML package or why there is none, and metadata
(feature spec and model version when exported from a candidate; also in the ONNX file's metadata).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.core.errors import StopError
from shared.model.dt import DecisionTransformer
from shared.model.guardian import RegimeVAE
from shared.model.tft import TemporalFusionTransformer
from shared.volume.candidates import Candidate

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install 'micro-muzero[onnx]'"
MAX_BATCH = 1024
EXPORT_BATCH = 2             # the example batch of torch.export (a batch of 1 would be specialised to a constant)
CHECK_BATCHES = (1, 5)       # the batches the ONNX file is checked on: neither is the export's
RTOL, ATOL = 1e-4, 1e-6      # per output, against its largest magnitude: max |diff| <= RTOL * max |torch| + ATOL


class MissingOnnxPackages(StopError, ImportError):
    """onnx, onnxscript or onnxruntime is not installed."""


class OnnxMismatch(StopError, ValueError):
    """The ONNX file's outputs differ from PyTorch's beyond the tolerance."""


def require_onnx_packages() -> None:
    missing = []
    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingOnnxPackages(f"ONNX export needs {', '.join(missing)}: {INSTALL_HINT}")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]   # per row (without the batch dimension)
    dtype: torch.dtype = torch.float32
    high: int = 0            # int64 inputs: values in [0, high)


@dataclass(frozen=True)
class ExportSpec:
    name: str                # the file's stem
    module: nn.Module        # eval mode; returns a tensor or a tuple of tensors in `outputs` order
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]


class _TFTForecast(nn.Module):
    def __init__(self, model: TemporalFusionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, observed: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(observed, known))


class _GuardianEncoder(nn.Module):
    def __init__(self, model: RegimeVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(windows)


def tft_spec(model: TemporalFusionTransformer) -> ExportSpec:
    c = model.config
    return ExportSpec("tft", _TFTForecast(model).eval(),
                      (InputSpec("observed", (c.encoder_bars, c.observed_inputs)),
                       InputSpec("known", (c.decoder_bars, c.known_inputs))),
                      ("quantiles", "observed_weights", "known_weights", "attention"))


def dt_spec(model: DecisionTransformer) -> ExportSpec:
    c = model.config
    k = c.context_steps
    return ExportSpec("dt", model.eval(),
                      (InputSpec("returns_to_go", (k, 1)), InputSpec("states", (k, c.state_inputs)),
                       InputSpec("actions", (k,), torch.int64, c.num_actions), InputSpec("mask", (k,), torch.bool)),
                      ("logits",))


def guardian_spec(model: RegimeVAE) -> ExportSpec:
    c = model.config
    return ExportSpec("guardian_encoder", _GuardianEncoder(model).eval(),
                      (InputSpec("windows", (c.window_bars, c.inputs)),), ("mu", "logvar"))


def random_inputs(spec: ExportSpec, batch: int, seed: int) -> list[torch.Tensor]:
    """Standard normal floats, int64 in [0, high), and left-padded masks (the last step always real)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in spec.inputs:
        if i.dtype == torch.int64:
            out.append(torch.randint(0, i.high, (batch, *i.shape), generator=g))
        elif i.dtype == torch.bool:
            first = torch.randint(0, i.shape[-1], (batch, 1), generator=g)
            out.append(torch.arange(i.shape[-1]) >= first)
        else:
            out.append(torch.randn(batch, *i.shape, generator=g))
    return out


def _torch_outputs(module: nn.Module, inputs: list[torch.Tensor]) -> list[np.ndarray]:
    with torch.no_grad():
        result = module(*inputs)
    return [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]


def check_onnx(path: Path, spec: ExportSpec, inputs: list[torch.Tensor]) -> dict[str, float]:
    """Run the ONNX file in onnxruntime and `spec.module` in PyTorch on `inputs`; {output: max |diff|},
    or OnnxMismatch when an output is off by more than RTOL * max |torch| + ATOL."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(spec.outputs), {i.name: x.numpy() for i, x in zip(spec.inputs, inputs)})
    diffs = {}
    for name, have, want in zip(spec.outputs, got, _torch_outputs(spec.module, inputs)):
        if have.shape != want.shape:
            raise OnnxMismatch(f"{spec.name}.{name}: onnxruntime gives shape {have.shape}, torch {want.shape}")
        diff = float(np.abs(have - want).max())
        limit = RTOL * float(np.abs(want).max()) + ATOL
        if not diff <= limit:  # NaN fails too
            raise OnnxMismatch(f"{spec.name}.{name} differs from PyTorch by {diff:.3e} (batch {len(want)}; "
                               f"tolerance {limit:.3e})")
        diffs[name] = diff
    return diffs


def sha256_of(path: Path) -> str:
    """A file's sha256; a directory (an .mlpackage): over its files' relative paths and bytes, sorted
    (the Core ML packages of both exporters)."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _coreml(exported: torch.export.ExportedProgram, spec: ExportSpec, out: Path, metadata: dict[str, str]) -> dict | str:
    """The ML program package, or "not converted: <reason>" when coremltools cannot convert the program."""
    import coremltools as ct

    batch = ct.RangeDim(lower_bound=1, upper_bound=MAX_BATCH, default=1)
    dtypes = {torch.float32: np.float32, torch.int64: np.int32, torch.bool: bool}
    try:
        mlmodel = ct.convert(
            exported.run_decompositions({}),
            inputs=[ct.TensorType(name=i.name, shape=(batch, *i.shape), dtype=dtypes[i.dtype]) for i in spec.inputs],
            outputs=[ct.TensorType(name=name) for name in spec.outputs],
            convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.macOS13)
    except Exception as error:  # noqa: BLE001 - any converter failure is recorded, the ONNX file stands
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        return f"not converted: {type(error).__name__}: {reason}"
    mlmodel.user_defined_metadata.update(metadata)
    target = out / f"{spec.name}.mlpackage"
    mlmodel.save(str(target))
    return {"file": target.name, "sha256": sha256_of(target)}


def export_spec(spec: ExportSpec, out: Path, metadata: dict[str, str] | None = None) -> dict:
    """Export one model to `out`/<name>.onnx (and .mlpackage where Core ML converts), check the ONNX file in
    onnxruntime, and add its entry to `out`/manifest.json; returns the entry."""
    require_onnx_packages()
    import onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata or {})
    example = random_inputs(spec, EXPORT_BATCH, seed=0)
    batch = torch.export.Dim.DYNAMIC(min=1, max=MAX_BATCH)
    with torch.no_grad():
        exported = torch.export.export(spec.module, tuple(example), dynamic_shapes=tuple({0: batch} for _ in example),
                                       strict=False)
    program = torch.onnx.export(exported, dynamo=True, input_names=[i.name for i in spec.inputs],
                                output_names=list(spec.outputs), verbose=False)
    assert program is not None  # the dynamo exporter always returns its program
    program.rename_axes({program.model.graph.inputs[0].shape[0]: "batch"})
    program.model.metadata_props.update(metadata)
    path = out / f"{spec.name}.onnx"
    program.save(path, external_data=False)
    onnx.checker.check_model(str(path))
    diffs = {name: 0.0 for name in spec.outputs}
    for seed, check_batch in enumerate(CHECK_BATCHES, start=1):
        for name, diff in check_onnx(path, spec, random_inputs(spec, check_batch, seed)).items():
            diffs[name] = max(diffs[name], diff)
    shapes = [x.shape[1:] for x in _torch_outputs(spec.module, example)]
    entry = {
        "file": path.name, "sha256": sha256_of(path), "opset": program.model.opset_imports[""],
        "inputs": {i.name: {"shape": ["batch", *i.shape], "dtype": str(i.dtype).removeprefix("torch.")}
                   for i in spec.inputs},
        "outputs": {name: {"shape": ["batch", *shape], "dtype": "float32"} for name, shape in zip(spec.outputs, shapes)},
        "checked": {"runtime": "onnxruntime CPUExecutionProvider", "batches": list(CHECK_BATCHES),
                    "rtol": RTOL, "atol": ATOL, "max_abs_diff": diffs},
        "coreml": _coreml(exported, spec, out, metadata),
        "metadata": metadata,
    }
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    manifest["models"][spec.name] = entry
    manifest["exported_at"] = datetime.now(timezone.utc).isoformat()
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry


def export_tft(model: TemporalFusionTransformer, out: Path, metadata: dict[str, str] | None = None) -> dict:
    return export_spec(tft_spec(model), out, metadata)


def export_dt(model: DecisionTransformer, out: Path, metadata: dict[str, str] | None = None) -> dict:
    return export_spec(dt_spec(model), out, metadata)


def export_guardian(model: RegimeVAE, out: Path, metadata: dict[str, str] | None = None) -> dict:
    """The encoder a live caller runs per window: windows -> (mu, logvar); mu is the regime latent."""
    return export_spec(guardian_spec(model), out, metadata)


def export_candidate(candidate: Candidate, out: Path) -> dict:
    """A candidate by its family: tft, and dt (the Strategist's family); muzero exports with `coreml`.
    The Guardian it was trained beside, if any, beside it: its encoder, with the named clusters and
    their risk levels in the file's metadata (`guardian_clusters`: what names a latent mean)."""
    model = candidate.model.eval().to("cpu")
    metadata = {"model_version": candidate.version, "family": candidate.family,
                "episode": str(candidate.episode), "checkpoint_sha256": candidate.sha256,
                "feature_spec_version": str(candidate.payload.get("feature_spec_version"))}
    if candidate.family in ("tft", "dt"):
        entry = (export_tft if candidate.family == "tft" else export_dt)(model, out, metadata)
        if candidate.guardian is not None:
            guardian = candidate.guardian
            clusters = {"names": list(guardian.names), "risk": guardian.risk.tolist(),
                        "centroids": guardian.centroids.tolist()}
            entry = {**entry, "guardian": export_guardian(guardian.model, out, {
                **metadata, "guardian_clusters": json.dumps(clusters)})}
        return entry
    if candidate.family == "muzero":
        raise ValueError(f"{candidate.path.name} is a muzero candidate: its networks export with the coreml subcommand "
                         f"(python -m shared.export coreml --checkpoint ...)")
    raise ValueError(f"{candidate.path.name}: no ONNX export for model family {candidate.family!r}")
