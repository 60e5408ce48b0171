"""TinyFace-style identification: layout reader, synthetic stand-in, rank-k against a loop reference."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fr_lightning.data import DataFormatError
from fr_lightning.eval.tinyface import load_tinyface, rank_accuracy


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fr_lightning.cli.data import main as data_main

    root = tmp_path_factory.mktemp("tinyface")
    data_main(["synth-tinyface", str(root), "--identities", "12", "--distractors", "30", "--seed", "1"])  # fr data synth-tinyface
    return root


def test_layout_and_natural_low_resolution(tiny: Path) -> None:
    tf = load_tinyface(tiny)
    assert len(tf.probes) == 24 and len(tf.gallery) == 12 + 30
    assert (tf.gallery_ids == -1).sum() == 30 and set(tf.probe_ids.tolist()) == set(tf.gallery_ids[tf.gallery_ids >= 0].tolist())
    sides = [max(cv2.imread(str(p)).shape[:2]) for p in tf.probes]
    assert 14 <= min(sides) and max(sides) <= 24  # probes are stored at about 20 px


def test_rank_accuracy_equals_loop_reference() -> None:
    rng = np.random.default_rng(0)
    gid = np.r_[np.arange(20), np.arange(5), -np.ones(40, np.int64)]
    g = rng.standard_normal((len(gid), 8))
    pid = rng.integers(0, 20, 60)
    p = g[pid] + 1.5 * rng.standard_normal((60, 8))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    got = rank_accuracy(p, pid, g, gid, ranks=(1, 5, 20), chunk=7)
    for k in (1, 5, 20):
        hits = 0
        for i in range(60):
            order = sorted(range(len(gid)), key=lambda j: -float(p[i] @ g[j]))
            hits += any(gid[j] == pid[i] for j in order[:k])
        assert got[f"rank-{k}"] == pytest.approx(hits / 60)
    assert got["rank-1"] <= got["rank-5"] <= got["rank-20"]


def test_bad_layout_errors(tmp_path: Path, tiny: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Probe"):
        load_tinyface(tmp_path)
    import shutil

    shutil.copytree(tiny, tmp_path / "t")
    next((tmp_path / "t" / "Probe").iterdir()).rename(tmp_path / "t" / "Probe" / "face.png")
    with pytest.raises(DataFormatError, match="face.png"):
        load_tinyface(tmp_path / "t")


def test_run_tinyface(tmp_path: Path, tiny: Path) -> None:
    from fr_lightning.cli.eval import run_tinyface

    class MeanColour:
        image_size = 16

        def __call__(self, images: np.ndarray) -> np.ndarray:
            a = images.reshape(len(images), 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(len(images), -1)
            b = images[:, :, ::-1].reshape(len(images), 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(len(images), -1)
            return np.stack([a, b], axis=1).astype(np.float32)

    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"0")
    res = run_tinyface(tiny, MeanColour(), ckpt, tmp_path / "out", workers=0, progress=False)
    assert json.loads((tmp_path / "out" / "tinyface.json").read_text())["rank-20"] == pytest.approx(res["rank-20"])
    assert res["probes"] == 24 and 0.0 <= res["rank-1"] <= res["rank-5"] <= res["rank-20"] <= 1.0
