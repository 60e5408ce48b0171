"""``fr embed`` and ``fr verify``: the .onnx path equals the checkpoint's predict_step, alignment, thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from fr_lightning.data import template  # noqa: E402
from fr_lightning.deploy import load_model  # noqa: E402
from fr_lightning.cli.embed import main as embed_main  # noqa: E402
from fr_lightning.cli.embed import order_file  # noqa: E402
from fr_lightning.deploy.images import load_face, normalize  # noqa: E402
from fr_lightning.cli.verify import main as verify_main  # noqa: E402
from tests.test_export import SIZE, exported_run, synthetic_faces  # noqa: E402


def write_faces(folder: Path, faces: np.ndarray, prefix: str = "face") -> list[str]:
    """Write RGB faces as lossless PNGs (nested folders, so the sort order is exercised); returns the names."""
    names = []
    for i, img in enumerate(faces):
        name = f"{'ab'[i % 2]}/{prefix}{i:03d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        names.append(name)
    return names


def predict_step_embeddings(ckpt: Path, faces: np.ndarray) -> np.ndarray:
    """What ``fr predict`` computes per batch: the module's predict_step on normalised images."""
    module = load_model(ckpt).module
    with torch.inference_mode():
        return module.predict_step({"images": torch.from_numpy(normalize(faces))}, 0).numpy()


def test_embed_onnx_equals_checkpoint_predict_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = exported_run()
    faces = synthetic_faces(40)
    names = write_faces(tmp_path / "faces", faces)
    order = sorted(range(len(names)), key=lambda i: names[i])
    embed_main([str(run["onnx"]), str(tmp_path / "faces"), str(tmp_path / "onnx.npy"), "--batch-size", "16", "--no-progress"])
    embed_main([str(run["ckpt"]), str(tmp_path / "faces"), str(tmp_path / "ckpt.npy"), "--batch-size", "7", "--no-progress"])
    assert "L2-normalised flip-test" in capsys.readouterr().out
    listed = order_file(tmp_path / "onnx.npy").read_text().splitlines()
    assert listed == [names[i] for i in order]
    reference = predict_step_embeddings(run["ckpt"], faces[order])
    from_onnx, from_ckpt = np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "ckpt.npy")
    assert from_onnx.shape == (40, 32) and from_onnx.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(from_onnx, axis=1), 1.0, atol=1e-5)
    assert np.abs(from_onnx - reference).max() <= 1e-5
    assert np.abs(from_ckpt - reference).max() <= 1e-6


def test_embed_aligns_with_landmarks_from_a_list_file(tmp_path: Path) -> None:
    run = exported_run()
    faces = synthetic_faces(6)
    # Each aligned crop, enlarged 2x and placed at an offset in a bigger photo; its 5 points move along.
    names, lines = [], []
    for i, face in enumerate(faces):
        photo = np.full((160, 150, 3), 90, np.uint8)
        dx, dy = 10 + 3 * i, 20 + i
        photo[dy : dy + 2 * SIZE, dx : dx + 2 * SIZE] = cv2.resize(face, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_CUBIC)
        name = f"photo{i}.png"
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        points = template(SIZE) * 2 + 0.5 + [dx, dy]  # cv2.resize maps pixel centres x -> 2x + 0.5
        crop, _ = load_face(tmp_path / name, SIZE, points)
        assert np.abs(crop.astype(float) - face).mean() < 3.0  # the aligner undoes the move (up to resampling)
        lines.append(name + " " + " ".join(f"{v:.3f}" for v in points.reshape(-1)))
        names.append(name)
    (tmp_path / "list.txt").write_text("\n".join(f"{n} {k}" for k, n in enumerate(names)) + "\n")  # "path label" lines
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    embed_main([str(run["onnx"]), str(tmp_path / "list.txt"), str(tmp_path / "aligned.npy"), "--landmarks", str(tmp_path / "landmarks.txt"), "--no-progress"])
    embed_main([str(run["onnx"]), str(tmp_path / "list.txt"), str(tmp_path / "resized.npy"), "--no-progress"])
    reference = predict_step_embeddings(run["ckpt"], faces)
    aligned = (np.load(tmp_path / "aligned.npy") * reference).sum(1)
    resized = (np.load(tmp_path / "resized.npy") * reference).sum(1)
    assert aligned.min() >= 0.95, aligned
    assert aligned.mean() > resized.mean() + 0.05, (aligned, resized)
    with pytest.raises(SystemExit):
        (tmp_path / "landmarks.txt").write_text(lines[0] + "\n")  # the other 5 images have no landmarks
        embed_main([str(run["onnx"]), str(tmp_path / "list.txt"), str(tmp_path / "x.npy"), "--landmarks", str(tmp_path / "landmarks.txt")])


def _pair(tmp_path: Path) -> tuple[str, str, float]:
    """Two face files and the cosine predict_step gives them."""
    faces = synthetic_faces(2)
    names = write_faces(tmp_path, faces)
    emb = predict_step_embeddings(exported_run()["ckpt"], faces)
    return str(tmp_path / names[0]), str(tmp_path / names[1]), float(emb[0] @ emb[1])


def test_verify_prints_cosine_and_decision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = exported_run()
    a, b, cos = _pair(tmp_path)
    verify_main([str(run["onnx"]), a, b, "--threshold", f"{cos - 0.01:.6f}"])
    out = capsys.readouterr().out
    printed = float(out.split("cosine similarity:")[1].split()[0])
    assert abs(printed - cos) <= 1e-5 and "decision: same" in out
    verify_main([str(run["onnx"]), a, b, "--threshold", f"{cos + 0.01:.6f}"])
    assert "decision: different" in capsys.readouterr().out


def test_verify_reads_the_threshold_from_verification_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fixture in the documented format of ``<run dir>/verification.json`` (written by the verification callback)."""
    run = exported_run()
    a, b, cos = _pair(tmp_path)
    report = {"synth-lfw": {"acc": 97.5, "acc_std": 0.4, "threshold": cos + 0.02}, "synth-cfpfp": {"acc": 90.1, "acc_std": 1.1, "threshold": cos - 0.02}}
    (tmp_path / "verification.json").write_text(json.dumps(report))
    verify_main([str(run["onnx"]), a, b, "--threshold-from", str(tmp_path), "--set", "synth-cfpfp"])
    assert "decision: same" in capsys.readouterr().out
    verify_main([str(run["onnx"]), a, b, "--threshold-from", str(tmp_path / "verification.json"), "--set", "synth-lfw"])
    out = capsys.readouterr().out
    assert "decision: different" in out and "synth-lfw" in out
    with pytest.raises(SystemExit):
        verify_main([str(run["onnx"]), a, b, "--threshold-from", str(tmp_path)])  # two sets, none chosen
    assert "--set" in capsys.readouterr().err
    # A .ckpt finds its own run's verification.json.
    run_json = run["ckpt"].parent.parent / "verification.json"
    run_json.write_text(json.dumps({"synth-lfw": {"acc": 97.5, "acc_std": 0.4, "threshold": cos - 0.02}}))
    try:
        verify_main([str(run["ckpt"]), a, b])
        assert "decision: same" in capsys.readouterr().out
    finally:
        run_json.unlink()
    (tmp_path / "bad.json").write_text(json.dumps({"synth-lfw": {"acc": 97.5, "threshold": "high"}}))
    with pytest.raises(SystemExit):
        verify_main([str(run["onnx"]), a, b, "--threshold-from", str(tmp_path / "bad.json")])
    assert "synth-lfw.threshold" in capsys.readouterr().err



def test_fr_help_lists_the_deployment_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    from fr_lightning.cli import SUBCOMMANDS, main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("export", "embed", "verify"):
        assert name in SUBCOMMANDS and f"  {name} " in out

@pytest.mark.slow
def test_embed_onnx_equals_fr_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fr fit`` a few steps, ``fr predict`` the checkpoint, ``fr export`` + ``fr embed`` the same images."""
    from fr_lightning.cli import cli_main
    from fr_lightning.data import SyntheticPairs
    from fr_lightning.cli import export as export_tool

    monkeypatch.chdir(tmp_path)
    args = [
        "--config", str(Path(__file__).resolve().parents[1] / "recipes" / "arcface.yaml"),
        "--model.init_args.backbone.init_args.width=0.125",
        "--data.init_args.train.init_args.num_identities=6",
        "--data.init_args.train.init_args.samples_per_identity=4",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
        "--data.init_args.val_sets=[{class_path: fr_lightning.data.SyntheticPairs, init_args: {name: synth-lfw, pairs: 20}}]",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
    ]
    cli_main(["fit", *args, "--trainer.max_steps=3", "--trainer.limit_val_batches=0"])
    ckpt = next(tmp_path.rglob("last.ckpt"))
    predicted = cli_main(["predict", *args, f"--ckpt_path={ckpt}"]).trainer.predict_loop.predictions
    predicted = torch.cat(predicted).numpy()
    faces = SyntheticPairs("synth-lfw", pairs=20).build(56).load(np.arange(40))
    for i, img in enumerate(faces):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    export_tool.main([str(ckpt), str(tmp_path / "m.onnx")])
    embed_main([str(tmp_path / "m.onnx"), str(tmp_path), str(tmp_path / "out.npy"), "--no-progress"])
    assert predicted.shape == (40, 128)
    assert np.abs(np.load(tmp_path / "out.npy") - predicted).max() <= 1e-5
