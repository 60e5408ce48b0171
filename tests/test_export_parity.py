"""Export parity for every registered backbone (slow), float16 export, and a method's own evaluation embedding.

Each backbone is built at width 1/8 on 56 px with a 32-d embedding, its BatchNorm statistics
calibrated on synthetic faces (so embeddings have a trained model's scale), saved as a run
folder, exported through ``fr export`` (ONNX and TorchScript) and compared with PyTorch on 64
synthetic faces at batch 1 and 17.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("onnxruntime")

from fr_lightning.backbones import BACKBONES  # noqa: E402
from fr_lightning.deploy import check_insightface_contract, compare, load_model  # noqa: E402
from fr_lightning.deploy.checkpoint import build_module  # noqa: E402
from fr_lightning.deploy.formats import run_onnx  # noqa: E402
from fr_lightning.deploy.images import normalize  # noqa: E402
from fr_lightning.cli import export as export_tool  # noqa: E402
from tests.test_export import SIZE, TINY_BACKBONE, calibrate, synthetic_faces, write_run  # noqa: E402


def _reference(net: torch.nn.Module, x: np.ndarray, batch: int) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([net(c) for c in torch.from_numpy(x).split(batch)]).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_exports_with_parity(name: str, tmp_path: Path) -> None:
    backbone = {"class_path": f"fr_lightning.backbones.{name}", "init_args": {"width": 0.125, "input_size": SIZE, "embedding_dim": 32}}
    ckpt = write_run(tmp_path / "run", backbone)
    export_tool.main([str(ckpt), str(tmp_path / "m.onnx")])
    export_tool.main([str(ckpt), str(tmp_path / "m.pt")])
    check_insightface_contract(tmp_path / "m.onnx")
    net = load_model(ckpt).network
    traced = torch.jit.load(str(tmp_path / "m.pt"))
    x = normalize(synthetic_faces(64))
    for batch in (1, 17):
        ref = _reference(net, x, batch)
        assert np.abs(ref).max() > 0.1
        out = np.concatenate([run_onnx(tmp_path / "m.onnx", x[i : i + batch]) for i in range(0, len(x), batch)])
        report = compare(ref, out)
        assert report.min_cosine >= 0.99999 and report.max_abs_diff <= 1e-4, (name, batch, str(report))
        assert np.abs(_reference(traced, x, batch) - ref).max() <= 1e-5, (name, batch)


@pytest.mark.slow
def test_fp16_export_keeps_float32_io(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    ckpt = write_run(tmp_path / "run", TINY_BACKBONE)
    export_tool.main([str(ckpt), str(tmp_path / "half.onnx"), "--fp16"])
    assert "float16 compute" in capsys.readouterr().out
    model = onnx.load(str(tmp_path / "half.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    check_insightface_contract(tmp_path / "half.onnx")
    x = normalize(synthetic_faces(17))
    report = compare(_reference(load_model(ckpt).network, x, 17), run_onnx(tmp_path / "half.onnx", x))
    assert report.min_cosine >= 0.999, str(report)


def _coteaching_run(root: Path) -> Path:
    """A run whose evaluation embedding is the mean of two co-teaching peers (different weights)."""
    config = {
        "model": {"class_path": "fr_lightning.FaceRecognitionModule", "init_args": {"backbone": TINY_BACKBONE, "head": {"class_path": "fr_lightning.heads.ArcFace"}, "num_classes": 5}},
        "trainer": {"callbacks": [{"class_path": "fr_lightning.methods.CoTeaching", "init_args": {"eval_embedding": "mean"}}]},
    }
    torch.manual_seed(1)
    module = build_module(config, "test")
    faces = synthetic_faces(64)
    calibrate(module.backbone, faces)
    calibrate(module.method_modules["coteaching"]["backbone"], faces)
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save({"state_dict": module.state_dict()}, root / "checkpoints" / "last.ckpt")
    return root / "checkpoints" / "last.ckpt"


def test_method_embedding_is_exported_torchscript(tmp_path: Path) -> None:
    """Co-teaching with ``eval_embedding: mean``: the exported network averages both peers."""
    ckpt = _coteaching_run(tmp_path / "run")
    export_tool.main([str(ckpt), str(tmp_path / "mean.pt")])
    loaded = load_model(ckpt)
    peer = loaded.module.method_modules["coteaching"]["backbone"]
    x = torch.from_numpy(normalize(synthetic_faces(9)))
    with torch.inference_mode():
        own, other = loaded.module.backbone(x), peer(x)
        out = torch.jit.load(str(tmp_path / "mean.pt"))(x)
    assert (own - other).abs().max() > 0.1  # the peers differ, so the mean is not one of them
    assert (out - 0.5 * (own + other)).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_method_embedding_is_exported_onnx(tmp_path: Path) -> None:
    ckpt = _coteaching_run(tmp_path / "run")
    export_tool.main([str(ckpt), str(tmp_path / "mean.onnx")])
    loaded = load_model(ckpt)
    x = normalize(synthetic_faces(17))
    ref = _reference(loaded.network, x, 17)
    own = _reference(loaded.module.backbone, x, 17)
    out = run_onnx(tmp_path / "mean.onnx", x)
    assert compare(ref, out).ok(0.99999, 1e-4) and not compare(own, out).ok(0.99999, 1e-4)
