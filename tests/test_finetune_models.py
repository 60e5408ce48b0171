"""Published models in every command that takes a model: a ``backbone.pth`` with ``--backbone``, insightface's ONNX graphs.

The reference is :class:`tests.test_init_from.RefIResNet`, a transcription of insightface's
``iresnet`` written independently of the project's backbone; its ``state_dict`` is the
``backbone.pth`` the commands read.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fr_lightning.cli import main
from fr_lightning.data import SyntheticPairs
from tests.test_init_from import RefIResNet, reference_backbone


def write_faces(folder: Path, count: int, size: int) -> np.ndarray:
    """Aligned synthetic faces as PNG files (sorted names); returns them RGB ``[count, size, size, 3]``."""
    faces = SyntheticPairs("finetune-models", pairs=20, set_seed=3).build(size).load(np.arange(count))
    folder.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(faces):
        cv2.imwrite(str(folder / f"face{i:02d}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    return faces


def reference_flip_test(net: torch.nn.Module, faces: np.ndarray) -> np.ndarray:
    """L2-normalised ``net(x) + net(mirror(x))`` computed directly, ``x = pixel / 127.5 - 1``."""
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        emb = net.eval()(x) + net(torch.flip(x, dims=[3]))
    return torch.nn.functional.normalize(emb, dim=1).numpy()


@pytest.mark.slow
def test_fr_embed_backbone_pth_equals_the_reference_at_insightface_size(tmp_path: Path) -> None:
    """The issue's command: an iResNet-18 at insightface's size (112 px, 512-d), no --image-size."""
    torch.manual_seed(0)
    net = RefIResNet([2, 2, 2, 2], base=64, num_features=512, input_size=112).eval()
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    faces = write_faces(tmp_path / "faces", 4, 112)
    main(["embed", str(tmp_path / "backbone.pth"), "--backbone", "iresnet18", str(tmp_path / "faces"), str(tmp_path / "out.npy"), "--no-progress"])
    got = np.load(tmp_path / "out.npy")
    assert got.shape == (4, 512)
    np.testing.assert_allclose(got, reference_flip_test(net, faces), atol=1e-5, rtol=0)


def test_fr_embed_small_backbone_pth_equals_the_reference(tmp_path: Path) -> None:
    net = reference_backbone()
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    faces = write_faces(tmp_path / "faces", 6, 56)
    main(["embed", str(tmp_path / "backbone.pth"), "--backbone", "iresnet18", "--image-size", "56", str(tmp_path / "faces"), str(tmp_path / "out.npy"), "--no-progress"])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference_flip_test(net, faces), atol=1e-5, rtol=0)


def test_backbone_pth_errors_name_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(reference_backbone().state_dict(), tmp_path / "backbone.pth")
    write_faces(tmp_path / "faces", 2, 56)
    cases = [
        ([], "name it with --backbone (iresnet18"),
        (["--backbone", "iresnet18"], "allow inputs of 49-64 px; pass the one it was trained at with --image-size"),
        (["--backbone", "iresnet50", "--image-size", "56"], "these weights are iresnet18"),
        (["--backbone", "resnet9"], "unknown backbone 'resnet9'"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as stop:
            main(["embed", str(tmp_path / "backbone.pth"), str(tmp_path / "faces"), str(tmp_path / "out.npy"), "--no-progress", *extra])
        assert stop.value.code == 1
        assert message in capsys.readouterr().err


def test_fr_verify_and_eval_take_a_backbone_pth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = reference_backbone()
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    faces = write_faces(tmp_path / "faces", 2, 56)
    main(["verify", str(tmp_path / "backbone.pth"), str(tmp_path / "faces" / "face00.png"), str(tmp_path / "faces" / "face01.png"),
          "--backbone", "iresnet18", "--image-size", "56", "--threshold", "0.5"])  # fmt: skip
    ref = reference_flip_test(net, faces)
    out = capsys.readouterr().out
    assert f"cosine similarity: {float(ref[0] @ ref[1]):.6f}"[:-1] in out
    from fr_lightning.deploy import load_embedder

    pairs = load_embedder(tmp_path / "backbone.pth", backbone="iresnet18", image_size=56)(faces)  # what fr eval extracts
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        ref_a, ref_b = net(x).numpy(), net(torch.flip(x, dims=[3])).numpy()
    scale = float(np.abs(ref_a).max())  # raw embeddings are not unit length: 1e-5 relative to their scale
    np.testing.assert_allclose(pairs[:, 0], ref_a, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(pairs[:, 1], ref_b, atol=1e-5 * scale, rtol=0)


@pytest.mark.slow
def test_insightface_onnx_that_normalises_itself(tmp_path: Path) -> None:
    """A graph like insightface's ``w600k_r50.onnx`` (first nodes Sub, Mul: it takes raw pixels) embeds like the network."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper, numpy_helper

    from fr_lightning.deploy import export_onnx, insightface_view

    net = reference_backbone()
    export_onnx(net, tmp_path / "ours.onnx", 56)
    model = onnx.load(str(tmp_path / "ours.onnx"))
    graph = model.graph
    name = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["normed" if i == name else i for i in node.input]
    graph.initializer.extend([numpy_helper.from_array(np.array(127.5, np.float32), "mean"), numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale")])
    first = [helper.make_node("Sub", [name, "mean"], ["centred"], name="Sub_0"), helper.make_node("Mul", ["centred", "scale"], ["normed"], name="Mul_1")]
    nodes = first + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(tmp_path / "insightface.onnx"))
    assert (insightface_view(tmp_path / "insightface.onnx").input_mean, insightface_view(tmp_path / "insightface.onnx").input_std) == (0.0, 1.0)
    faces = write_faces(tmp_path / "faces", 4, 56)
    main(["embed", str(tmp_path / "insightface.onnx"), str(tmp_path / "faces"), str(tmp_path / "out.npy"), "--no-progress"])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference_flip_test(net, faces), atol=1e-5, rtol=0)


def test_fr_eval_tinyface_takes_a_backbone_pth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(reference_backbone().state_dict(), tmp_path / "backbone.pth")
    main(["data", "synth-tinyface", str(tmp_path / "tf"), "--identities", "6", "--distractors", "10", "--seed", "1"])
    main(["eval", "tinyface", "--root", str(tmp_path / "tf"), "--ckpt", str(tmp_path / "backbone.pth"), "--backbone", "iresnet18",
          "--image-size", "56", "--out", str(tmp_path / "eval"), "--no-wandb", "--no-progress", "--workers", "0"])  # fmt: skip
    assert "TinyFace identification (12 probes" in capsys.readouterr().out
    assert (tmp_path / "eval" / "tinyface.json").is_file()


def test_fr_export_takes_a_backbone_pth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = reference_backbone()
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    with pytest.raises(SystemExit) as stop:
        main(["export", str(tmp_path / "backbone.pth"), str(tmp_path / "model.pt")])
    assert stop.value.code == 1 and "name its architecture with --backbone" in capsys.readouterr().err
    main(["export", str(tmp_path / "backbone.pth"), str(tmp_path / "model.pt"), "--backbone", "iresnet18", "--image-size", "56"])
    assert "check on 8 synthetic faces vs PyTorch" in capsys.readouterr().out
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        np.testing.assert_allclose(torch.jit.load(str(tmp_path / "model.pt"))(x).numpy(), net(x).numpy(), atol=1e-4, rtol=0)
