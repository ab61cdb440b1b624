"""ONNX export of the challenger models (shared/export_onnx.py) and `python -m shared.export onnx`: each
model's file runs in onnxruntime like the PyTorch model at batch sizes other than the export's, a
mismatch is caught, the manifest's sha256s are the files', and the command exports a tft candidate
and refuses what it cannot export with the reason."""

from __future__ import annotations

import copy
import hashlib
import json
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from shared.config import ForecastPolicyConfig, TrainingConfig
from shared.config.challengers import DTConfig, GuardianConfig, TFTConfig
from shared.core.feature_spec import INDICATORS_SPEC_VERSION
from shared.export import main as export_main
from shared.export_onnx import (
    OnnxMismatch,
    check_onnx,
    dt_spec,
    export_candidate,
    export_dt,
    export_guardian,
    export_tft,
    guardian_spec,
    random_inputs,
    tft_spec,
)
from shared.model import MuZeroNetworks
from shared.model.dt import DecisionTransformer
from shared.model.guardian import RegimeVAE
from shared.model.tft import TemporalFusionTransformer
from shared.training.forecaster import ForecasterTrainer
from shared.volume.candidates import candidate_payload, load_candidate, serialize

torch.set_num_threads(1)

TINY_TFT = TFTConfig(hidden=16, variable_hidden=8, heads=2, lstm_layers=1, encoder_bars=20, decoder_bars=12,
                     batch_size=16, steps_per_iteration=2, checkpoint_interval_steps=2)
TINY_DT = DTConfig(hidden=16, layers=2, heads=2, context_steps=10)
TINY_GUARDIAN = GuardianConfig(window_bars=10, regime_horizon_bars=10, latent=4, hidden=(16,))
SPECS = {"tft": tft_spec, "dt": dt_spec, "guardian_encoder": guardian_spec}


def _tree_sha256(path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The three tiny models (built in training mode: the export must evaluate them) exported to one folder."""
    torch.manual_seed(0)
    models = {"tft": TemporalFusionTransformer(TINY_TFT), "dt": DecisionTransformer(TINY_DT),
              "guardian_encoder": RegimeVAE(TINY_GUARDIAN)}
    with torch.no_grad():  # standardisation buffers away from the identity, as a trained model has them
        models["guardian_encoder"].set_scaling(torch.linspace(-1, 1, TINY_GUARDIAN.inputs),
                                               torch.linspace(0.5, 2, TINY_GUARDIAN.inputs))
    out = tmp_path_factory.mktemp("onnx")
    meta = {"feature_spec_version": INDICATORS_SPEC_VERSION}
    entries = {"tft": export_tft(models["tft"], out, meta), "dt": export_dt(models["dt"], out, meta),
               "guardian_encoder": export_guardian(models["guardian_encoder"], out, meta)}
    return out, models, entries


@pytest.mark.parametrize("name", list(SPECS))
def test_each_model_runs_in_onnxruntime_like_torch_at_another_batch(exported, name):
    out, models, _ = exported
    spec = SPECS[name](models[name])
    assert not spec.module.training
    session = onnxruntime.InferenceSession(str(out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in spec.inputs]
    assert all(i.shape[0] == "batch" for i in session.get_inputs())
    assert [o.name for o in session.get_outputs()] == list(spec.outputs)
    for batch in (3, 7):  # the export's example batch was 2
        inputs = random_inputs(spec, batch, seed=100 + batch)
        got = session.run(None, {i.name: x.numpy() for i, x in zip(spec.inputs, inputs)})
        with torch.no_grad():
            want = spec.module(*inputs)
        want = want if isinstance(want, tuple) else (want,)
        assert len(got) == len(want) == len(spec.outputs)
        for have, expected in zip(got, want):
            assert have.shape[0] == batch
            np.testing.assert_allclose(have, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_the_guardian_exports_its_encoder_the_regime_latent(exported):
    out, models, _ = exported
    vae = models["guardian_encoder"]
    windows = torch.randn(4, TINY_GUARDIAN.window_bars, TINY_GUARDIAN.inputs) * 3
    session = onnxruntime.InferenceSession(str(out / "guardian_encoder.onnx"), providers=["CPUExecutionProvider"])
    mu, logvar = session.run(["mu", "logvar"], {"windows": windows.numpy()})
    np.testing.assert_allclose(mu, vae.latent(windows).numpy(), rtol=1e-4, atol=1e-5)
    assert mu.shape == logvar.shape == (4, TINY_GUARDIAN.latent)


@pytest.mark.parametrize("name", list(SPECS))
def test_a_model_that_is_not_the_exported_one_fails_the_check(exported, name):
    out, models, _ = exported
    perturbed = copy.deepcopy(models[name])
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    spec = SPECS[name](perturbed)
    with pytest.raises(OnnxMismatch, match=rf"^{name}\.\w+ differs from PyTorch by [0-9.e+-]+ \(batch 4; tolerance"):
        check_onnx(out / f"{name}.onnx", spec, random_inputs(spec, 4, seed=5))
    # the model itself passes the same check
    same = SPECS[name](models[name])
    assert max(check_onnx(out / f"{name}.onnx", same, random_inputs(same, 4, seed=5)).values()) < 1e-4


def test_the_manifest_lists_every_file_with_its_sha256(exported):
    out, _, entries = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["models"]) == {"tft", "dt", "guardian_encoder"}
    for name, entry in manifest["models"].items():
        assert entry == json.loads(json.dumps(entries[name]))
        assert entry["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
        assert isinstance(entry["opset"], int) and entry["opset"] >= 18
        assert entry["metadata"]["feature_spec_version"] == INDICATORS_SPEC_VERSION
        assert all(s["shape"][0] == "batch" for s in [*entry["inputs"].values(), *entry["outputs"].values()])
        assert set(entry["checked"]["max_abs_diff"]) == set(entry["outputs"])
        assert all(d < 1e-4 for d in entry["checked"]["max_abs_diff"].values())
    models = manifest["models"]
    assert models["tft"]["outputs"]["quantiles"]["shape"] == ["batch", 12, 3]
    assert models["dt"]["inputs"]["actions"] == {"shape": ["batch", 10], "dtype": "int64"}
    assert models["dt"]["inputs"]["mask"]["dtype"] == "bool"
    # Core ML: the guardian's encoder converts; the others are recorded with coremltools' reason
    package = models["guardian_encoder"]["coreml"]
    assert package["file"] == "guardian_encoder.mlpackage"
    assert package["sha256"] == _tree_sha256(out / package["file"])
    for name in ("tft", "dt"):
        assert models[name]["coreml"].startswith("not converted: ")
        assert not (out / f"{name}.mlpackage").exists()


def test_the_onnx_file_carries_its_metadata(exported):
    import onnx

    out, _, _ = exported
    props = {p.key: p.value for p in onnx.load(str(out / "tft.onnx")).metadata_props}
    assert props == {"feature_spec_version": INDICATORS_SPEC_VERSION}


@pytest.fixture(scope="module")
def tft_candidate(features, tmp_path_factory):
    """A tiny forecaster's first candidate, as the training service writes it (two steps)."""
    root = tmp_path_factory.mktemp("tft-run")
    config = TrainingConfig(model="tft", tft=TINY_TFT, forecast_policy=ForecastPolicyConfig(horizon_bars=6))
    trainer = ForecasterTrainer(features, root, config)
    report = trainer.run_iteration()
    trainer.close()
    assert report.checkpoint is not None
    return root / "training" / report.checkpoint


def test_the_command_exports_a_tft_candidate(tft_candidate, tmp_path, capsys):
    out = tmp_path / "export"
    assert export_main(["onnx", "--checkpoint", str(tft_candidate), "--out", str(out)]) == 0
    assert "exported tft.onnx of ep00000002-" in capsys.readouterr().out
    candidate = load_candidate(tft_candidate)
    entry = json.loads((out / "manifest.json").read_text())["models"]["tft"]
    assert entry["sha256"] == hashlib.sha256((out / "tft.onnx").read_bytes()).hexdigest()
    assert entry["metadata"]["checkpoint_sha256"] == candidate.sha256
    assert entry["metadata"]["feature_spec_version"] == INDICATORS_SPEC_VERSION
    assert entry["metadata"]["family"] == "tft"
    # the file is the trained model, its fitted scaling included
    spec = tft_spec(candidate.model)
    inputs = random_inputs(spec, 3, seed=9)
    session = onnxruntime.InferenceSession(str(out / "tft.onnx"), providers=["CPUExecutionProvider"])
    quantiles = session.run(["quantiles"], {"observed": inputs[0].numpy(), "known": inputs[1].numpy()})[0]
    with torch.no_grad():
        want = candidate.model(*inputs).quantiles.numpy()
    np.testing.assert_allclose(quantiles, want, rtol=1e-4, atol=1e-7 + 1e-4 * float(np.abs(want).max()))


def test_the_command_refuses_a_muzero_candidate_with_the_reason(tmp_path, capsys):
    config = TrainingConfig()
    payload = candidate_payload(MuZeroNetworks(config.network), config, {}, episode=1, learner_steps=1,
                                instruments=("GBPJPY",), granularity="M1")
    path = tmp_path / "ckpt-ep00000001.pt"
    path.write_bytes(serialize(payload))
    out = tmp_path / "export"
    assert export_main(["onnx", "--checkpoint", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "is a muzero candidate" in error and "coreml subcommand" in error
    assert not out.exists()
    assert export_main(["onnx", "--checkpoint", str(tmp_path / "absent.pt"), "--out", str(out)]) == 2
    assert "absent.pt does not exist" in capsys.readouterr().err


def test_coreml_refuses_a_challenger_and_a_volume_with_nothing_promoted(tft_candidate, tmp_path, capsys):
    out = tmp_path / "export"
    assert export_main(["coreml", "--checkpoint", str(tft_candidate), "--out", str(out), "--quiet"]) == 2
    assert "is a tft candidate: its model exports with the onnx subcommand" in capsys.readouterr().err
    (tmp_path / "volume" / "promoted").mkdir(parents=True)
    for where in (tmp_path / "volume", tmp_path / "volume" / "promoted" / "CURRENT"):
        assert export_main(["onnx", "--checkpoint", str(where), "--out", str(out)]) == 2
        assert "has no promoted/CURRENT: nothing promoted yet" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_names_the_extra_when_onnx_is_missing(tft_candidate, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # an import of it now fails
    out = tmp_path / "export"
    assert export_main(["onnx", "--checkpoint", str(tft_candidate), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "ONNX export needs onnxscript" in error and "pip install 'micro-muzero[onnx]'" in error
    assert "Traceback" not in error and not out.exists()


def test_a_dt_family_candidate_exports_its_decision_transformer(tmp_path):
    from shared.volume.candidates import Candidate

    model = DecisionTransformer(TINY_DT)
    candidate = Candidate(path=tmp_path / "dt.pt", sha256="ab" * 32, episode=7, model=model,
                          config=TrainingConfig(model="dt", dt=TINY_DT),
                          payload={"feature_spec_version": INDICATORS_SPEC_VERSION})
    entry = export_candidate(candidate, tmp_path)
    assert entry["file"] == "dt.onnx" and entry["metadata"]["model_version"] == "ep00000007-abababababab"
    assert set(entry["outputs"]) == {"logits"} and (tmp_path / "dt.onnx").is_file()


def test_a_candidate_trained_beside_a_guardian_exports_it_with_its_named_clusters(tmp_path):
    import dataclasses

    import onnx

    from shared.model.guardian import ENCODER_PREFIXES, TrainedGuardian
    from shared.volume.candidates import Candidate

    vae = RegimeVAE(TINY_GUARDIAN)
    record = {"config": dataclasses.asdict(TINY_GUARDIAN), "centroids": torch.randn(3, TINY_GUARDIAN.latent),
              "encoder_state": {k: v for k, v in vae.state_dict().items() if k.startswith(ENCODER_PREFIXES)},
              "names": ["bull", "bear", "sideways"], "risk": [0, 2, 3]}
    candidate = Candidate(path=tmp_path / "dt.pt", sha256="cd" * 32, episode=9, model=DecisionTransformer(TINY_DT),
                          config=TrainingConfig(model="dt", dt=TINY_DT),
                          payload={"feature_spec_version": INDICATORS_SPEC_VERSION}, guardian=TrainedGuardian(record))
    entry = export_candidate(candidate, tmp_path)
    assert entry["file"] == "dt.onnx" and entry["guardian"]["file"] == "guardian_encoder.onnx"
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "guardian_encoder.onnx")).metadata_props}
    clusters = json.loads(props["guardian_clusters"])
    assert clusters["names"] == record["names"] and clusters["risk"] == record["risk"]
    np.testing.assert_allclose(clusters["centroids"], record["centroids"].numpy(), rtol=1e-6)
    assert props["model_version"] == "ep00000009-cdcdcdcdcdcd"
