"""Core ML export: four packages with fixed names, shapes and metadata, a
manifest with sha256s, checked against the PyTorch modules, and clear refusals."""

from __future__ import annotations

import json

import coremltools as ct
import pytest
import torch

from shared.config import NetworkConfig, TrainingConfig
from shared.core.feature_spec import FEATURE_SPEC_VERSION
from shared.export import coreml_runtime_available, export_coreml, main
from shared.export_onnx import sha256_of
from shared.training.trainer import Trainer
from shared.volume.candidates import load_candidate
from shared.volume.promotion import promote
from tests.helpers import bars_from_closes, feature_set_from_bars

SMALL = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import numpy as np

    root = tmp_path_factory.mktemp("ck")
    closes = list(170 + np.cumsum(np.random.default_rng(0).normal(0, 0.02, 3000)))
    features = feature_set_from_bars(bars_from_closes(closes), sessions={"train": np.array([1600, 1700])})
    trainer = Trainer(features, root, TrainingConfig(network=SMALL, episodes_per_iteration=2))
    trainer.episode = 128
    name = trainer.write_checkpoint()
    trainer.close()
    return root, root / "training" / name


def test_export_writes_checked_packages_and_a_manifest(checkpoint, tmp_path):
    root, path = checkpoint
    manifest = export_coreml(load_candidate(path), tmp_path / "out", progress=False)
    assert [p["file"] for p in manifest["packages"]] == [
        "representation.mlpackage", "afterstate.mlpackage", "dynamics.mlpackage", "prediction.mlpackage"]
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["feature_spec_version"] == FEATURE_SPEC_VERSION and on_disk["episode"] == 128
    expected_check = "numerics" if coreml_runtime_available() else "program"
    for package in on_disk["packages"]:
        assert package["sha256"] == sha256_of(tmp_path / "out" / package["file"])
        assert package["verified"] == expected_check
        spec = ct.models.MLModel(str(tmp_path / "out" / package["file"]), skip_model_load=True).get_spec()
        assert [i.name for i in spec.description.input] == list(package["inputs"])
        assert [o.name for o in spec.description.output] == package["outputs"]
        meta = spec.description.metadata.userDefined
        assert meta["feature_spec_version"] == FEATURE_SPEC_VERSION
        assert meta["model_version"] == on_disk["model_version"] and meta["episode"] == "128"
        for item in spec.description.input:  # flexible batch 1..64, fixed row shape
            dims = list(item.type.multiArrayType.shapeRange.sizeRanges)
            assert (dims[0].lowerBound, dims[0].upperBound) == (1, 64)
            assert [d.lowerBound for d in dims[1:]] == package["inputs"][item.name][1:]
    rep = on_disk["packages"][0]
    assert rep["inputs"] == {"temporal": [None, 32, 9], "static": [None, 6]}


def test_cli_exports_the_promoted_model_and_refuses_another_feature_spec(checkpoint, tmp_path, capsys):
    root, path = checkpoint
    from shared.volume.checkpoints import sha256_file

    promote(root, path.read_bytes(), sha256_file(path), 128, {"quality": 1.0})
    assert main(["coreml", "--checkpoint", str(root / "promoted" / "CURRENT"), "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert "exported 4 packages" in capsys.readouterr().out

    payload = torch.load(path, weights_only=True)
    payload["feature_spec_version"] = "micro-v0"
    other = tmp_path / "old.pt"
    torch.save(payload, other)
    assert main(["coreml", "--checkpoint", str(other), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "feature_spec_mismatch" in capsys.readouterr().err
    payload = torch.load(path, weights_only=True)
    payload["config"]["training"]["network"]["hidden"] = 48
    torch.save(payload, other)
    assert main(["coreml", "--checkpoint", str(other), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "architecture_mismatch" in capsys.readouterr().err
