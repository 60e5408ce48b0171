"""``fr export``: ONNX / TorchScript / pth from a run folder, parity with PyTorch, insightface's loader contract.

One tiny run (iResNet with one block per stage, width 1/8, 56 px) is exported once per session
and shared by these tests and tests/test_embed.py; tests/test_export_parity.py runs every
registered backbone (slow).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from fr_lightning.backbones import IResNet  # noqa: E402
from fr_lightning.data import SyntheticPairs  # noqa: E402
from fr_lightning.deploy import check_insightface_contract, compare, insightface_blob, insightface_view, load_model  # noqa: E402
from fr_lightning.deploy.formats import run_onnx  # noqa: E402
from fr_lightning.deploy.images import normalize  # noqa: E402
from fr_lightning.heads import ArcFace  # noqa: E402
from fr_lightning.module import FaceRecognitionModule  # noqa: E402
from fr_lightning.cli import export as export_tool  # noqa: E402

SIZE = 56
TINY_BACKBONE = {"class_path": "fr_lightning.backbones.IResNet", "init_args": {"layers": [1, 1, 1, 1], "width": 0.125, "input_size": SIZE, "embedding_dim": 32}}


def synthetic_faces(count: int, size: int = SIZE, set_seed: int = 7) -> np.ndarray:
    """``count`` synthetic faces, RGB uint8 ``[count, size, size, 3]``."""
    return SyntheticPairs("deploy-test", pairs=max(20, (count + 1) // 2), set_seed=set_seed).build(size).load(np.arange(count))


def calibrate(net: torch.nn.Module, images: np.ndarray) -> torch.nn.Module:
    """Set BatchNorm running statistics from ``images`` (as a trained network has), then eval mode.

    Random-init running stats (mean 0, var 1) let activations grow through depth; calibrated
    ones keep embeddings at the scale of a trained model, so absolute tolerances mean something.
    """
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        x = torch.from_numpy(normalize(images))
        for chunk in x.split(32):
            net(chunk)
    return net.eval()


def write_run(root: Path, backbone: dict, num_classes: int = 5, seed: int = 0, extra: dict | None = None) -> Path:
    """A run folder like ``fr fit`` leaves: ``config.yaml`` + ``checkpoints/last.ckpt``; returns the checkpoint."""
    torch.manual_seed(seed)
    config = {
        "model": {"class_path": "fr_lightning.FaceRecognitionModule", "init_args": {"backbone": backbone, "head": {"class_path": "fr_lightning.heads.ArcFace"}}},
        "data": {"class_path": "fr_lightning.FaceDataModule", "init_args": {"image_size": backbone["init_args"]["input_size"]}},
    }
    config.update(extra or {})
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--backbone", type=torch.nn.Module)
    net = parser.instantiate_classes(parser.parse_object({"backbone": backbone})).backbone
    calibrate(net, synthetic_faces(64, net.input_size, set_seed=seed + 100))
    module = FaceRecognitionModule(backbone=net, head=ArcFace(), num_classes=num_classes)
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save({"state_dict": module.state_dict()}, root / "checkpoints" / "last.ckpt")
    return root / "checkpoints" / "last.ckpt"


@functools.lru_cache(maxsize=1)
def exported_run() -> dict[str, Path]:
    """The tiny run exported once per session through ``fr export`` (ONNX and TorchScript)."""
    root = Path(tempfile.mkdtemp(prefix="fr_export_"))
    ckpt = write_run(root / "run", TINY_BACKBONE)
    export_tool.main([str(ckpt), str(root / "model.onnx")])
    export_tool.main([str(ckpt), str(root / "model.pt")])
    return {"ckpt": ckpt, "onnx": root / "model.onnx", "torchscript": root / "model.pt", "root": root}


def test_onnx_matches_pytorch_on_64_faces_at_batch_1_and_17() -> None:
    run = exported_run()
    net = load_model(run["ckpt"]).network
    x = normalize(synthetic_faces(64))
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(ref).max() > 0.1  # a meaningful scale for the absolute tolerance
    for batch in (1, 17):
        out = np.concatenate([run_onnx(run["onnx"], x[i : i + batch]) for i in range(0, len(x), batch)])
        report = compare(ref, out)
        assert report.min_cosine >= 0.99999 and report.max_abs_diff <= 1e-4, (batch, str(report))


def test_graph_contract_and_insightface_loader() -> None:
    path = exported_run()["onnx"]
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    assert [o.name for o in model.graph.output] == ["embedding"]
    view = check_insightface_contract(path)
    assert (view.input_mean, view.input_std) == (127.5, 127.5)
    assert view.input_name == "input" and view.input_shape[1:] == [3, SIZE, SIZE] and isinstance(view.input_shape[0], str)
    assert view.input_size == (SIZE, SIZE) and not view.routed  # 56 px: load ArcFaceONNX directly
    # insightface's get_feat path: BGR crops -> its blob -> the graph == our RGB normalisation -> PyTorch.
    rgb = synthetic_faces(5)
    blob = insightface_blob([img[..., ::-1].copy() for img in rgb], view)
    np.testing.assert_allclose(blob, normalize(rgb), atol=1e-6)
    net = load_model(exported_run()["ckpt"]).network
    with torch.inference_mode():
        ref = net(torch.from_numpy(normalize(rgb))).numpy()
    assert compare(ref, run_onnx(path, blob)).ok(0.99999, 1e-4)


def test_insightface_rule_flags_in_graph_normalisation(tmp_path: Path) -> None:
    """A graph starting with Sub/Mul nodes reads as mean 0 / std 1 to insightface: the check must reject it."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])
    y = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", 3, 112, 112])
    consts = [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("m", 127.5), ("s", 0.0078125))]
    nodes = [helper.make_node("Sub", ["data", "m"], ["a"], name="Sub_0"), helper.make_node("Mul", ["a", "s"], ["fc1"], name="Mul_1")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], consts), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "mx.onnx")
    view = insightface_view(tmp_path / "mx.onnx")
    assert (view.input_mean, view.input_std) == (0.0, 1.0) and view.routed
    with pytest.raises(ValueError, match="in-graph normalisation"):
        check_insightface_contract(tmp_path / "mx.onnx")


def test_torchscript_identical_within_1e5() -> None:
    run = exported_run()
    net = load_model(run["ckpt"]).network
    traced = torch.jit.load(str(run["torchscript"]))
    x = torch.from_numpy(normalize(synthetic_faces(64)))
    with torch.inference_mode():
        for batch in (1, 17):
            ref = torch.cat([net(c) for c in x.split(batch)])
            out = torch.cat([traced(c) for c in x.split(batch)])
            assert (ref - out).abs().max().item() <= 1e-5


def test_pth_export_keeps_backbone_layout(tmp_path: Path) -> None:
    ckpt = exported_run()["ckpt"]
    export_tool.main([str(ckpt), str(tmp_path / "backbone.pth")])
    state = torch.load(tmp_path / "backbone.pth", weights_only=True)
    net = IResNet(**TINY_BACKBONE["init_args"])
    net.load_state_dict(state, strict=True)


def test_export_check_fails_loudly_on_mismatch() -> None:
    run = exported_run()
    net = load_model(run["ckpt"]).network
    with torch.no_grad():
        net.fc.weight.mul_(1.01)  # a network the file no longer matches
    with pytest.raises(export_tool.ExportCheckError, match="does not reproduce PyTorch"):
        export_tool.check_export(net, run["onnx"], "onnx", SIZE, fp16=False)


def test_config_problems_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = exported_run()["ckpt"]
    lonely = tmp_path / "lonely.ckpt"
    lonely.write_bytes(ckpt.read_bytes())
    with pytest.raises(SystemExit):
        export_tool.main([str(lonely), str(tmp_path / "m.onnx")])
    assert "--config" in capsys.readouterr().err
    wrong = tmp_path / "wrong.yaml"
    cfg = yaml.safe_load((ckpt.parent.parent / "config.yaml").read_text())
    cfg["model"]["init_args"]["backbone"]["init_args"]["width"] = 0.25
    wrong.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit):
        export_tool.main([str(ckpt), str(tmp_path / "m.onnx"), "--config", str(wrong)])
    err = capsys.readouterr().err
    assert "wrong.yaml" in err and "shape" in err
    with pytest.raises(SystemExit):
        export_tool.main([str(ckpt), str(tmp_path / "m.bin")])
    assert "--format" in capsys.readouterr().err
