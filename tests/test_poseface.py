"""PoseFace: pose cores, the callback (fit, export, resume), the pose-dependent margin and the per-yaw evaluation."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fr_lightning.batch import FaceBatch
from fr_lightning.data import FaceDataModule, SyntheticPairs, SyntheticSource
from fr_lightning.data.synthetic import FaceRenderer
from fr_lightning.eval.pose import PoseEvaluation, accuracy_by_bin, pair_decisions
from fr_lightning.eval.verification import evaluate_pairs
from fr_lightning.functional.pose import (
    PoseHistogram,
    decorrelation_loss,
    normalize_landmarks,
    pose_margins,
    pose_weights,
    yaw_proxy,
)
from fr_lightning.methods import PoseFace
from tests.helpers import tiny_data, tiny_module, tiny_trainer


# ------------------------------------------------------------------ functional core
def test_yaw_proxy_sign_and_range_on_rendered_faces() -> None:
    renderer = FaceRenderer(image_size=56)
    ids = np.arange(8, dtype=np.int64)
    idx = np.zeros(8, dtype=np.int64)
    proxy = {}
    for yaw in (-40.0, 0.0, 40.0):
        out = renderer.render(ids, idx, yaw=np.full(8, yaw, np.float32))
        np.testing.assert_allclose(out.pose[:, 0], yaw, atol=1e-4)
        proxy[yaw] = yaw_proxy(torch.from_numpy(out.landmarks))
        assert proxy[yaw].shape == (8,) and (proxy[yaw].abs() <= 1).all()
    # Positive yaw turns the nose towards the image's right: positive proxy.
    assert (proxy[40.0] > 0.15).all() and (proxy[-40.0] < -0.15).all(), proxy
    assert (proxy[0.0].abs() < proxy[40.0].abs()).all()
    # Extreme geometry is clipped to [-1, 1].
    lm = torch.tensor([[[10.0, 10], [12, 10], [40, 20], [10, 30], [12, 30]]])
    assert yaw_proxy(lm).item() == 1.0 and yaw_proxy(lm.flip(-1)[..., [1, 0]] * torch.tensor([-1.0, 1])).item() == -1.0


def test_normalize_landmarks_is_translation_and_scale_invariant() -> None:
    lm = torch.rand(4, 5, 2) * 50
    lm[:, 1, 0] += 20  # keep the eyes apart
    target = normalize_landmarks(lm)
    assert target.shape == (4, 10)
    torch.testing.assert_close(normalize_landmarks(3.0 * lm + 7.0), target)
    eyes = target.view(4, 5, 2)[:, :2]
    torch.testing.assert_close((eyes[:, 0] - eyes[:, 1]).norm(dim=1), torch.ones(4))


def test_decorrelation_zero_for_independent_and_positive_for_correlated() -> None:
    g = torch.Generator().manual_seed(0)
    x, p = torch.randn(4096, 8, generator=g), torch.randn(4096, 4, generator=g)
    assert decorrelation_loss(x, p).item() < 5e-3  # ~1/B for independent columns
    q = torch.cat([x[:, :2] * 3 + 1, torch.randn(4096, 2, generator=g)], dim=1)
    assert decorrelation_loss(x, q).item() > 0.05
    # A single identical column: correlation 1.
    torch.testing.assert_close(decorrelation_loss(x[:, :1], x[:, :1]), torch.tensor(1.0), rtol=1e-3, atol=0)
    # Float64 reference of mean((x̂ᵀp̂/B)²).
    xs, ps = x[:64].double(), q[:64].double()
    xh = (xs - xs.mean(0)) / xs.std(0, unbiased=False)
    ph = (ps - ps.mean(0)) / ps.std(0, unbiased=False)
    torch.testing.assert_close(decorrelation_loss(xs, ps), ((xh.T @ ph) / 64).pow(2).mean(), rtol=1e-4, atol=0)


def test_pose_weights_mean_one_and_larger_for_rarer_bins() -> None:
    hist = PoseHistogram(bins=9, ema=0.5)
    yaw = torch.tensor([0.05] * 12 + [0.5] * 3 + [-0.95])  # mostly frontal, few profiles
    freq = hist.update(yaw)
    torch.testing.assert_close(freq.sum(), torch.tensor(1.0))
    assert freq[0] == pytest.approx(12 / 16) and freq[8] == pytest.approx(1 / 16)
    w = pose_weights(yaw, freq, gamma=0.5)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    assert w[-1] > w[12] > w[0]
    torch.testing.assert_close(w[-1] / w[0], torch.tensor((12 / 1) ** 0.5))
    assert torch.allclose(pose_weights(yaw, freq, gamma=0.0), torch.ones(16))
    # EMA blending after the first batch.
    hist.update(torch.zeros(4))
    assert freq[0] == pytest.approx(0.5 * 12 / 16 + 0.5) and int(hist.steps) == 2
    torch.testing.assert_close(pose_margins(torch.tensor([-1.0, 0.0, 0.5]), 0.1, 0.2), torch.tensor([0.3, 0.1, 0.2]))


# ---------------------------------------------------------------------- the method
def _batch(n: int = 8, size: int = 56, landmarks: bool = True) -> FaceBatch:
    renderer = FaceRenderer(image_size=size)
    ids = np.arange(n, dtype=np.int64) % 8
    out = renderer.render(ids, np.arange(n, dtype=np.int64), yaw=np.linspace(-70, 70, n).astype(np.float32))
    return FaceBatch(
        images=torch.from_numpy(out.images).permute(0, 3, 1, 2).float() / 127.5 - 1,
        labels=torch.from_numpy(ids),
        landmarks=torch.from_numpy(out.landmarks) if landmarks else None,
    )


def test_missing_landmarks_error_names_the_method() -> None:
    module = tiny_module()
    module.attach_methods([PoseFace()])
    with pytest.raises(ValueError, match=r"PoseFace needs `landmarks`"):
        module.training_step(_batch(landmarks=False), 0)
    margin = tiny_module()
    margin.attach_methods([PoseFace(adaptive="margin", disentangle=False)])
    with pytest.raises(ValueError, match=r"PoseFace needs `landmarks`"):
        margin.training_step(_batch(landmarks=False), 0)


def test_every_part_can_be_switched_off() -> None:
    module = tiny_module()
    assert PoseFace(adaptive="none", disentangle=False).build(module) is None
    branch = PoseFace(adaptive="weights", disentangle=False).build(module)
    assert branch is not None and branch.encoder is None and branch.histogram is not None
    branch = PoseFace(adaptive="margin").build(module)
    assert branch is not None and branch.encoder is not None and branch.histogram is None
    with pytest.raises(ValueError):
        PoseFace(adaptive="sometimes")  # type: ignore[arg-type]


def test_pose_margin_equals_an_extra_target_margin() -> None:
    """adaptive=margin: the loss equals the head's loss on cosines shifted by Δm·|yaw| at the target."""
    torch.manual_seed(0)
    module = tiny_module().eval()
    method = PoseFace(adaptive="margin", margin_delta=0.3, disentangle=False)
    module.attach_methods([method])
    batch = _batch()
    total = module.training_step(batch, 0)
    with torch.no_grad():
        emb = module.backbone(batch.images)
        cosine, target = module.classifier(emb, batch.labels)
        m = 0.3 * yaw_proxy(batch.landmarks).abs()
        shifted = cosine.clone()
        shifted[torch.arange(len(target)), target] -= m
        logits = module.head(shifted, target)
        expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(total.detach(), expected, rtol=1e-4, atol=1e-5)
    assert (m > 0).any()


def test_identity_embedding_is_exported_without_the_pose_branch(tmp_path: Path) -> None:
    module = tiny_module()
    module.attach_methods([PoseFace()])
    assert any(k.startswith("method_modules.poseface.encoder") for k in module.state_dict())
    assert "method_modules.poseface.histogram.freq" in module.state_dict()
    state = torch.load(module.export_backbone(tmp_path / "backbone.pth"), weights_only=True)
    assert set(state) == set(module.backbone.state_dict())
    # The embedding itself does not pass through the branch.
    images = torch.rand(2, 3, 56, 56) * 2 - 1
    module.eval()
    torch.testing.assert_close(module(images), module.backbone(images))


def _data() -> FaceDataModule:
    """tiny_data plus a small cross-pose set."""
    return FaceDataModule(
        train=SyntheticSource(num_identities=8, samples_per_identity=4),
        val_sets=[SyntheticPairs("synth-lfw", pairs=40), SyntheticPairs("synth-cfpfp", kind="cross_pose", pairs=40, set_seed=1)],
        image_size=56,
        batch_size=8,
        val_batch_size=32,
        num_workers=0,
    )


def test_fit_logs_terms_saves_and_resumes_histogram(tmp_path: Path) -> None:
    evaluation = PoseEvaluation(bins=[0, 60, 70, 90])
    trainer = tiny_trainer(tmp_path, callbacks=[PoseFace(), evaluation], max_epochs=1, limit_train_batches=2)
    module = tiny_module()
    trainer.fit(module, _data())
    m = trainer.callback_metrics
    for key in ("train/loss/poseface/pose", "train/loss/poseface/decorrelation", "train/poseface/weight_max", "train/poseface/yaw_abs"):
        assert key in m and torch.isfinite(m[key]), key
    assert set(evaluation.results) <= {"0-60", "60-70", "70-90"} and evaluation.results
    for label, (acc, n) in evaluation.results.items():
        assert float(m[f"val/synth-cfpfp/acc@yaw{label}"]) == pytest.approx(acc) and n > 0
    assert sum(n for _, n in evaluation.results.values()) == 40
    assert list((tmp_path / "plots").glob("val_pose_step*.png"))

    hist = module.method_modules["poseface"].histogram
    assert int(hist.steps) == 2
    saved = hist.freq.clone()
    ckpt = tmp_path / "two.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.equal(torch.load(ckpt, weights_only=True)["state_dict"]["method_modules.poseface.histogram.freq"], saved)

    seen: dict[str, torch.Tensor] = {}

    class Capture(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            seen["freq"] = pl_module.method_modules["poseface"].histogram.freq.clone()

    resumed = tiny_trainer(tmp_path, callbacks=[PoseFace(), Capture()], max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    again = tiny_module()
    resumed.fit(again, tiny_data(), ckpt_path=ckpt)
    assert torch.equal(seen["freq"], saved)
    assert resumed.global_step == 4 and int(again.method_modules["poseface"].histogram.steps) == 4
    assert torch.isfinite(resumed.callback_metrics["train/loss"])


# -------------------------------------------------------------------- evaluation
def test_pair_decisions_pool_to_the_protocol_accuracy() -> None:
    rng = np.random.default_rng(0)
    n = 200
    same = np.tile(np.r_[np.ones(10, bool), np.zeros(10, bool)], 10)
    base = rng.normal(size=(n, 16))
    emb = np.empty((2 * n, 16))
    emb[0::2] = base
    emb[1::2] = np.where(same[:, None], base + 0.9 * rng.normal(size=(n, 16)), rng.normal(size=(n, 16)))
    correct = pair_decisions(emb, same)
    assert correct.mean() == pytest.approx(evaluate_pairs(emb, same)["acc"])
    yaw = np.linspace(55, 80, n)
    res = accuracy_by_bin(correct, yaw, [0, 30, 60, 70, 80])
    assert set(res) == {"30-60", "60-70", "70-80"}  # empty bin left out, last bin includes 80
    assert sum(k for _, k in res.values()) == n
    assert res["60-70"][0] == pytest.approx(correct[(yaw >= 60) & (yaw < 70)].mean())
