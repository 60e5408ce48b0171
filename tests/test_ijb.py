"""IJB-B/C: readers, the template protocol against slow loop references, feature cache, synthetic set, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fr_lightning.data import DataFormatError
from fr_lightning.eval.ijb import identify_open_set, insightface_roc, load_ijb, tar_table, template_pair_scores, verify_templates
from fr_lightning.eval.ijb.features import AlignedImages, FeatureCache, extract_features

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fr_lightning.cli.data import main as data_main

    root = tmp_path_factory.mktemp("ijbc")
    data_main(["synth-ijb", str(root), "--subjects", "10", "--impostor-ratio", "8", "--seed", "3"])  # fr data synth-ijb
    return root


# ---------------------------------------------------------------- slow references (the protocol, loop by loop)


def ref_templates(feats, faceness, templates, medias, norm_score, detector):
    out = {}
    for t in sorted(set(templates.tolist())):
        media_feats = []
        for m in sorted(set(medias[templates == t].tolist())):
            rows = []
            for i in range(len(templates)):
                if templates[i] == t and medias[i] == m:
                    x = feats[i].astype(np.float64)
                    if not norm_score:
                        x = x / np.sqrt((x * x).sum())
                    if detector:
                        x = x * float(faceness[i])
                    rows.append(x)
            media_feats.append(sum(rows) / len(rows))
        v = sum(media_feats)
        out[t] = v / np.sqrt((v * v).sum())
    return out


def ref_roc_table(scores, labels):
    """sklearn roc_curve(drop_intermediate=True) + insightface's closest-FPR table, with plain loops."""
    thresholds = sorted(set(scores.tolist()), reverse=True)
    tps, fps = [], []
    for th in thresholds:
        tps.append(sum(1 for s, y in zip(scores, labels) if s >= th and y == 1))
        fps.append(sum(1 for s, y in zip(scores, labels) if s >= th and y == 0))
    keep = [0] + [k for k in range(1, len(tps) - 1) if (fps[k + 1] - 2 * fps[k] + fps[k - 1]) != 0 or (tps[k + 1] - 2 * tps[k] + tps[k - 1]) != 0] + [len(tps) - 1]
    fp = [0] + [fps[k] for k in keep]
    tp = [0] + [tps[k] for k in keep]
    fpr = [f / fp[-1] for f in fp]
    tpr = [t / tp[-1] for t in tp]
    table = {}
    for far in FARS:
        best = None
        for k in range(len(fpr)):
            gap = abs(fpr[k] - far)
            if best is None or gap < best[0] or (gap == best[0] and tpr[k] >= best[1]):
                best = (gap, tpr[k])
        table[far] = best[1]
    auc = sum((fpr[k + 1] - fpr[k]) * (tpr[k + 1] + tpr[k]) / 2 for k in range(len(fpr) - 1))
    return table, auc


def _features(ijb, seed=0, dim=16):
    """Per-image features: a subject direction plus noise, with varied norms."""
    rng = np.random.default_rng(seed)
    subject_of = {}
    for g in [ijb.probes, *ijb.galleries.values()]:
        subject_of.update(zip(g.templates.tolist(), g.subjects.tolist()))
    centres = rng.standard_normal((max(subject_of.values()) + 1, dim))
    subj = np.array([subject_of[t] for t in ijb.templates.tolist()])
    feats = centres[subj] + 1.3 * rng.standard_normal((len(subj), dim))
    return (feats * rng.uniform(0.5, 3.0, (len(subj), 1))).astype(np.float32)


# ---------------------------------------------------------------- protocol


@pytest.mark.parametrize("norm_score,detector", [(True, True), (False, True), (True, False), (False, False)])
def test_verify_templates_equals_loop_reference(synth: Path, norm_score: bool, detector: bool) -> None:
    ijb = load_ijb(synth)
    feats = _features(ijb)
    scores, metrics = verify_templates(feats, ijb.faceness, ijb.templates, ijb.medias, ijb.t1, ijb.t2, ijb.labels, norm_score, detector)
    tfeat = ref_templates(feats, ijb.faceness, ijb.templates, ijb.medias, norm_score, detector)
    ref_scores = np.array([float(tfeat[a] @ tfeat[b]) for a, b in zip(ijb.t1.tolist(), ijb.t2.tolist())])
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-9)
    table, auc = ref_roc_table(ref_scores, ijb.labels.tolist())
    assert set(metrics) == {"tar@far=1e-6", "tar@far=1e-5", "tar@far=1e-4", "tar@far=1e-3", "tar@far=1e-2", "tar@far=1e-1", "auc"}
    for far in FARS:
        assert metrics[f"tar@far={far:.0e}".replace("e-0", "e-")] == pytest.approx(table[far], abs=1e-6)
    assert metrics["auc"] == pytest.approx(auc, abs=1e-9)
    assert 0.5 < metrics["auc"] <= 1.0  # the subject structure is visible


def test_roc_ties_collinear_points_and_closest_far() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 12, 400).astype(np.float64)  # many ties, long straight ROC runs
    labels = (rng.random(400) < 0.3 + 0.05 * scores).astype(int)
    fpr, tpr, thr = insightface_roc(scores, labels)
    table, auc = ref_roc_table(scores, labels.tolist())
    got = tar_table(fpr, tpr, FARS)
    assert [got[k] for k in got] == pytest.approx([table[f] for f in FARS], abs=1e-12)
    assert np.isinf(thr[0]) and fpr[0] == 0 and tpr[-1] == 1
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(auc)
    with pytest.raises(ValueError, match="genuine"):
        insightface_roc(scores, np.zeros(400))


def test_pair_scores_across_blocks_and_float32() -> None:
    rng = np.random.default_rng(2)
    f = rng.standard_normal((50, 8))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    ids = np.arange(100, 150)
    t1, t2 = rng.choice(ids, 300), rng.choice(ids, 300)
    direct = np.einsum("nd,nd->n", f[t1 - 100], f[t2 - 100])
    np.testing.assert_allclose(template_pair_scores(f, ids, t1, t2, block=7), direct, atol=1e-12)
    np.testing.assert_allclose(template_pair_scores(f, ids, t1, t2, block=7, dtype=np.float32), direct, atol=1e-5)
    with pytest.raises(ValueError, match="template 7"):
        template_pair_scores(f, ids, np.array([7]), np.array([100]))


def test_open_set_identification_equals_loop_reference() -> None:
    rng = np.random.default_rng(4)
    gsub = np.r_[np.arange(30), np.arange(10)]  # subjects 0..9 have two gallery templates
    g = rng.standard_normal((40, 6))
    psub = rng.integers(0, 60, 200)  # subjects >= 30 are non-mated
    p = np.where((psub < 30)[:, None], g[np.minimum(psub, 29)], 0.0) + 1.2 * rng.standard_normal((200, 6))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    got = identify_open_set(p, psub, g, gsub, chunk=17)
    subjects = sorted(set(gsub.tolist()))
    ranks, mate_scores, top_nm, first = [], [], [], []
    for i in range(200):
        per = {s: max(float(p[i] @ g[j]) for j in range(40) if gsub[j] == s) for s in subjects}
        if psub[i] in per:
            ms = per[int(psub[i])]
            r = sum(1 for s, v in per.items() if s != psub[i] and v > ms)
            ranks.append(r)
            mate_scores.append(ms)
        else:
            top_nm.append(max(per.values()))
    for k in (1, 5, 10):
        assert got[f"rank-{k}"] == pytest.approx(np.mean([r < k for r in ranks]))
    top_nm.sort(reverse=True)
    for f, key in ((1e-2, "tpir@fpir=1e-2"), (1e-1, "tpir@fpir=1e-1")):
        allowed = int(f * len(top_nm))
        th = top_nm[allowed]
        assert sum(1 for v in top_nm if v > th) <= allowed
        assert got[key] == pytest.approx(np.mean([r == 0 and s > th for r, s in zip(ranks, mate_scores)]))
    assert got["mated"] == len(ranks) and got["non_mated"] == len(top_nm)


# ---------------------------------------------------------------- readers and synthetic layout


def test_synthetic_layout(synth: Path) -> None:
    ijb = load_ijb(synth)
    assert ijb.target == "ijbc" and set(ijb.galleries) == {"G1", "G2"}
    assert len(set(ijb.templates.tolist())) == len(ijb.probes.templates) + 10  # 1:1 templates + one gallery template per subject
    media_per_template = {t: len(set(ijb.medias[ijb.templates == t].tolist())) for t in set(ijb.templates.tolist())}
    assert max(media_per_template.values()) >= 3
    import cv2

    for i in range(0, len(ijb.names), 23):
        img = cv2.imread(str(ijb.image_path(i)))
        assert img is not None and min(img.shape[:2]) > 112
        assert (ijb.landmarks[i] > 0).all() and (ijb.landmarks[i] < img.shape[1]).all()
    assert ((ijb.faceness > 0) & (ijb.faceness <= 1)).all()
    assert not set(ijb.galleries["G1"].subjects.tolist()) & set(ijb.galleries["G2"].subjects.tolist())
    owner = dict(zip(ijb.probes.templates.tolist(), ijb.probes.subjects.tolist()))
    assert all((owner[a] == owner[b]) == bool(y) for a, b, y in zip(ijb.t1.tolist(), ijb.t2.tolist(), ijb.labels.tolist()))
    assert ijb.labels.sum() > 0 and (ijb.labels == 0).sum() > ijb.labels.sum()


def test_reader_errors_name_file_and_line(tmp_path: Path, synth: Path) -> None:
    import shutil

    root = tmp_path / "ijb"
    shutil.copytree(synth / "meta", root / "meta")
    pairs = root / "meta" / "ijbc_template_pair_label.txt"
    lines = pairs.read_text().splitlines()
    lines[4] = "1 2 x"
    pairs.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"ijbc_template_pair_label.txt, line 5"):
        load_ijb(root)
    shutil.copy(synth / "meta" / "ijbc_template_pair_label.txt", pairs)
    lmk = root / "meta" / "ijbc_name_5pts_score.txt"
    lines = lmk.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0]  # faceness missing
    lmk.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"ijbc_name_5pts_score.txt, line 3: .*12 fields"):
        load_ijb(root)
    lmk.unlink()
    with pytest.raises(FileNotFoundError, match="ijbc_name_5pts_score.txt"):
        load_ijb(root)


# ---------------------------------------------------------------- extraction and the command


class CountingEmbed:
    """A deterministic stand-in network: mean colour per quadrant (so features depend on the crop)."""

    image_size = 32

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen = 0
        self.fail_after = fail_after

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise KeyboardInterrupt
        self.seen += len(images)
        x = images.astype(np.float32)
        q = [x[:, :16, :16], x[:, :16, 16:], x[:, 16:, :16], x[:, 16:, 16:]]
        a = np.concatenate([v.mean(axis=(1, 2)) for v in q], axis=1)
        b = np.concatenate([v[:, :, ::-1].mean(axis=(1, 2)) for v in (q[1], q[0], q[3], q[2])], axis=1)
        return np.stack([a, b], axis=1)


def test_feature_cache_resumes_after_interrupt(tmp_path: Path, synth: Path) -> None:
    ijb = load_ijb(synth)
    paths = [ijb.image_path(i) for i in range(len(ijb.names))]
    data = AlignedImages(paths, ijb.landmarks, 32)
    first = CountingEmbed(fail_after=64)
    with pytest.raises(KeyboardInterrupt):
        extract_features(data, first, FeatureCache(tmp_path, "k", len(paths), chunk_size=32), batch_size=16, progress=False)
    assert first.seen == 64
    again = CountingEmbed()
    resumed = extract_features(data, again, FeatureCache(tmp_path, "k", len(paths), chunk_size=32), batch_size=16, progress=False)
    assert again.seen == len(paths) - 64  # the two finished chunks were not recomputed
    fresh = extract_features(data, CountingEmbed(), None, batch_size=16, progress=False)
    np.testing.assert_array_equal(resumed, fresh)
    with pytest.raises(DataFormatError, match="chunk size"):
        FeatureCache(tmp_path, "k", len(paths), chunk_size=64)


def test_run_ijb_writes_json_scores_and_table(tmp_path: Path, synth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fr_lightning.cli.eval import run_ijb

    ckpt = tmp_path / "fake.ckpt"
    ckpt.write_bytes(b"weights")  # only keys the cache here
    out = tmp_path / "out"
    res = run_ijb(synth, CountingEmbed(), ckpt, out, workers=0, progress=False, use_norm_score=False)
    assert json.loads((out / "ijbc.json").read_text())["1:1"] == pytest.approx(res["1:1"])
    assert res["switches"] == {"norm_score": False, "detector_score": True, "flip": True}
    assert set(res["1:N"]["G2"]) >= {"rank-1", "rank-5", "rank-10", "tpir@fpir=1e-2", "tpir@fpir=1e-1"}
    assert len(np.load(out / "ijbc_scores.npy")) == res["pairs"]
    assert "IJBC 1:1 (N0D1F1)" in capsys.readouterr().out
    again = CountingEmbed()
    run_ijb(synth, again, ckpt, out, workers=0, progress=False)
    assert again.seen == 0  # every feature came from the cache
    assert "resuming" in capsys.readouterr().out


@pytest.mark.slow
def test_fr_eval_ijb_command(tmp_path: Path, synth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import torch
    import yaml

    from fr_lightning.cli import cli_main
    from fr_lightning.cli.eval import main

    config = {
        "model": {
            "class_path": "fr_lightning.FaceRecognitionModule",
            "init_args": {
                "backbone": {"class_path": "fr_lightning.backbones.IResNet", "init_args": {"layers": [1, 1, 1, 1], "width": 0.125, "input_size": 56, "embedding_dim": 16}},
                "head": {"class_path": "fr_lightning.heads.ArcFace", "init_args": {"s": 16.0, "m": 0.3}},
            },
        },
        "data": {"class_path": "fr_lightning.FaceDataModule", "init_args": {"image_size": 56, "num_workers": 0, "train": {"class_path": "fr_lightning.data.SyntheticSource", "init_args": {"num_identities": 8, "samples_per_identity": 2}}}},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    module = cli_main(["--config", str(cfg), "--trainer.logger=false"], run=False).model
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "ckpt_path": None}, ckpt)
    out = tmp_path / "out"
    main(["ijb", "--root", str(synth), "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out), "--no-wandb", "--workers", "0", "--no-progress", "--batch-size", "64"])
    res = json.loads((out / "ijbc.json").read_text())
    assert set(res["1:N"]) == {"G1", "G2"} and 0.0 <= res["1:1"]["tar@far=1e-1"] <= 1.0 and 0.0 <= res["1:1"]["auc"] <= 1.0
    assert res["pairs"] == len(np.load(out / "ijbc_scores.npy"))
    text = capsys.readouterr().out
    assert "IJBC 1:1 (N1D1F1)" in text and "gallery G1" in text
    with pytest.raises(SystemExit):
        main(["ijb", "--root", str(tmp_path / "nowhere"), "--ckpt", str(ckpt), "--config", str(cfg), "--out", str(out), "--no-wandb"])
    assert "nowhere/meta" in capsys.readouterr().err
