"""IJB 1:N scored as insightface's ``ijb_1n.py``: against a loop-by-loop transcription of that script's steps."""

from __future__ import annotations

import heapq
import math
from pathlib import Path

import numpy as np
import pytest

from fr_lightning.eval.ijb import load_ijb, pool_templates
from fr_lightning.eval.ijb.evaluate import evaluate_ijb, format_table
from fr_lightning.eval.ijb.insightface_1n import search_insightface_1n


def script_templates(img_feats, templates, medias, choose_templates, choose_ids):
    """The script's ``image2template_feature``: media mean (several images), template sum, L2 norm; sorted templates."""
    unique, first = np.unique(choose_templates, return_index=True)
    feats = np.zeros((len(unique), img_feats.shape[1]))
    for k, t in enumerate(unique):
        rows = np.where(templates == t)[0]
        media_feats = []
        for m in np.unique(medias[rows]):
            media_feats.append(img_feats[rows][medias[rows] == m].mean(axis=0))
        feats[k] = np.sum(media_feats, axis=0)
    return feats / np.sqrt((feats**2).sum(-1, keepdims=True)), unique, np.asarray(choose_ids)[first]


def script_evaluation(query, gallery, mask, fars=(0.01, 0.1)):
    """The script's ``evaluation``: top-1/5/10 from argsort, then one threshold over all non-mate similarities."""
    sim = query @ gallery.T
    top = np.argsort(-sim)
    out = {f"rank-{k}": sum(mask[i] in top[i, :k] for i in range(len(query))) / len(query) for k in (1, 5, 10)}
    need = [math.ceil(len(query) * f) for f in fars]
    pos = np.array([sim[i, mask[i]] for i in range(len(query))])
    neg = [sim[i, j] for i in range(len(query)) for j in range(len(gallery)) if j != mask[i]]
    neg = heapq.nlargest(max(need), neg)
    for f, n in zip(fars, need):
        out[f"tpir@fpir={f:.0e}".replace("e-0", "e-")] = float(np.sum(pos > neg[n - 1]) / len(query))
    return out


def test_equals_the_script_on_the_same_features() -> None:
    rng = np.random.default_rng(7)
    n_img, subjects = 600, 40
    templates = rng.integers(0, 120, n_img)  # template t belongs to subject t % 40
    medias = rng.integers(0, 5, n_img) + 10 * templates
    ident = rng.standard_normal((subjects, 16))
    img = ident[templates % subjects] + 1.5 * rng.standard_normal((n_img, 16))
    faceness = rng.uniform(0.5, 1.0, n_img)
    used = np.unique(templates)
    gallery_t = np.array([t for t in used if t < subjects])  # one template per subject
    probe_t = np.array([t for t in used if t >= subjects])
    # the script's input: flip-summed features (here already summed), N1 (norms kept), D1 (faceness weights)
    weighted = img * faceness[:, None]
    g_feat, g_t, g_sub = script_templates(weighted, templates, medias, gallery_t, gallery_t % subjects)
    p_feat, p_t, p_sub = script_templates(weighted, templates, medias, probe_t, probe_t % subjects)
    mask = [int(np.where(g_sub == s)[0][0]) for s in p_sub]
    expected = script_evaluation(p_feat, g_feat, mask)

    tf, tids = pool_templates(img, faceness, templates, medias, use_norm_score=True, use_detector_score=True)
    gp, pp = np.searchsorted(tids, g_t), np.searchsorted(tids, p_t)
    np.testing.assert_allclose(tf[gp], g_feat, atol=1e-6)
    np.testing.assert_allclose(tf[pp], p_feat, atol=1e-6)
    got = search_insightface_1n(tf[pp], p_sub, tf[gp], g_sub)
    assert got["mated"] == len(p_t) and got["non_mated"] == 0
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert 0.0 < got["rank-1"] < 1.0 and 0.0 < got["tpir@fpir=1e-2"] < got["tpir@fpir=1e-1"] <= 1.0  # not a degenerate case


def test_refuses_a_gallery_that_is_not_one_template_per_subject() -> None:
    g = np.eye(3)
    with pytest.raises(ValueError, match="subject 1 has 2"):
        search_insightface_1n(g[:1], [0], g, [0, 1, 1])
    with pytest.raises(ValueError, match="probe subject 5 has no gallery template"):
        search_insightface_1n(g[:1], [5], g, [0, 1, 2])


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fr_lightning.cli.data import main as data_main

    root = tmp_path_factory.mktemp("ijbc")
    data_main(["synth-ijb", str(root), "--subjects", "10", "--impostor-ratio", "8", "--seed", "3"])
    return root


def test_evaluate_ijb_merges_the_galleries_and_names_the_protocol(synth: Path) -> None:
    ijb = load_ijb(synth)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((len(ijb.names), 2, 8)).astype(np.float32)
    results, _ = evaluate_ijb(ijb, feats, one_to_n_protocol="insightface")
    (name, r), = results["1:N"].items()
    assert name == "+".join(ijb.galleries) + " (ijb_1n.py)" and results["1:N protocol"] == "insightface"
    assert r["mated"] == len(np.unique(ijb.probes.templates)) and r["non_mated"] == 0
    assert "insightface ijb_1n.py" in format_table(results)
    per_gallery, _ = evaluate_ijb(ijb, feats)
    assert set(per_gallery["1:N"]) == set(ijb.galleries) and "per gallery, open set" in format_table(per_gallery)
    with pytest.raises(ValueError, match="one_to_n_protocol"):
        evaluate_ijb(ijb, feats, one_to_n_protocol="nist")


def test_fr_eval_ijb_1n_protocol_option(tmp_path: Path, synth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import torch
    import yaml

    from fr_lightning.cli import cli_main
    from fr_lightning.cli.eval import main

    backbone = {"class_path": "fr_lightning.backbones.IResNet", "init_args": {"layers": [1, 1, 1, 1], "width": 0.125, "embedding_dim": 16}}
    train = {"class_path": "fr_lightning.data.SyntheticSource", "init_args": {"num_identities": 8, "samples_per_identity": 2}}
    config = {
        "model": {"class_path": "fr_lightning.FaceRecognitionModule", "init_args": {"backbone": backbone, "head": {"class_path": "fr_lightning.heads.ArcFace"}}},
        "data": {"class_path": "fr_lightning.FaceDataModule", "init_args": {"image_size": 56, "num_workers": 0, "train": train}},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    torch.save({"state_dict": cli_main(["--config", str(cfg), "--trainer.logger=false"], run=False).model.state_dict()}, tmp_path / "m.ckpt")
    out = tmp_path / "out"
    args = ["ijb", "--root", str(synth), "--ckpt", str(tmp_path / "m.ckpt"), "--config", str(cfg), "--out", str(out)]
    main([*args, "--no-wandb", "--workers", "0", "--no-progress", "--1n-protocol", "insightface"])
    res = json.loads((out / "ijbc.json").read_text())
    assert list(res["1:N"]) == ["G1+G2 (ijb_1n.py)"] and res["1:N protocol"] == "insightface"
    assert "[insightface ijb_1n.py, closed set]" in capsys.readouterr().out
