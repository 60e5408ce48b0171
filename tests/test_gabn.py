"""GABN (docs/methods.md): attention maps, gradient reversal, erasing, the callback, fairness evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fr_lightning.backbones import FaceBackbone, FeatureInfo
from fr_lightning.batch import FaceBatch, StepContext
from fr_lightning.classifiers import PartialFC
from fr_lightning.data import FaceDataModule, SyntheticPairs, SyntheticSource
from fr_lightning.data.pairs import PairSet
from fr_lightning.data.sources import group_val_sets
from fr_lightning.data.synthetic import FaceRenderer
from fr_lightning.eval.fairness import (
    FairnessEvaluation,
    attention_overlays,
    embedding_attention,
    fairness_summary,
    find_group_sets,
)
from fr_lightning.functional.gabn import (
    attention_area,
    erase_cells,
    grad_reverse,
    gradient_attention_map,
    top_cells,
    warmup_factor,
)
from fr_lightning.methods import GABN
from tests.helpers import tiny_module, tiny_trainer


# ------------------------------------------------------------------ functional core
def _hand_gam(feats: np.ndarray, dscore_dfeat_channel: np.ndarray) -> np.ndarray:
    """float64 Grad-CAM for a score whose gradient is constant over space: α_k = g_k / (h·w)."""
    b, c, h, w = feats.shape
    alpha = dscore_dfeat_channel / (h * w)  # [B, C]
    cam = np.maximum((alpha[:, :, None, None] * feats).sum(1), 0.0)
    return cam / cam.reshape(b, -1).sum(1)[:, None, None]


def test_attention_map_matches_a_hand_built_logit() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 5, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, generator=g, dtype=torch.float64)
    s = 16.0
    # The logit is s · Σ_k w_k · mean_{h,w} A_k: its gradient per channel is s·w_k/(h·w) everywhere.
    score = s * (feats.mean(dim=(2, 3)) * weights).sum(1)
    gam = gradient_attention_map(feats, score)
    expected = _hand_gam(feats.detach().numpy(), s * np.tile(weights.numpy(), (3, 1)))
    np.testing.assert_allclose(gam.numpy(), expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(gam.sum(dim=(1, 2)), torch.ones(3, dtype=gam.dtype))
    # The scale s cancels out.
    again = gradient_attention_map(feats, score / s)
    torch.testing.assert_close(again, gam)


class _KnownBackbone(FaceBackbone):
    """A 'backbone' whose feature map is a fixed parameter and whose embedding is linear in its pooled map."""

    def __init__(self, feats: torch.Tensor, proj: torch.Tensor) -> None:
        super().__init__()
        self.feature_info = FeatureInfo(channels=feats.shape[1], reduction=1, module="")
        self.feats = nn.Parameter(feats.clone())
        self.proj = nn.Parameter(proj.clone())

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.feats * (1 + 0 * images.mean())

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(2, 3)) @ self.proj.T


def test_embedding_attention_matches_the_hand_built_case() -> None:
    g = torch.Generator().manual_seed(1)
    feats, proj = torch.randn(2, 6, 3, 3, generator=g), torch.randn(4, 6, generator=g)
    backbone = _KnownBackbone(feats, proj)
    gam = embedding_attention(backbone, torch.zeros(2, 3, 8, 8))
    # score = x·x̂ (x̂ detached) => ∂score/∂pooled_k = Σ_j x̂_j P_jk.
    emb = feats.mean(dim=(2, 3)) @ proj.T
    unit = emb / emb.norm(dim=1, keepdim=True)
    expected = _hand_gam(feats.double().numpy(), (unit @ proj).double().numpy())
    np.testing.assert_allclose(gam.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_zero_map_becomes_uniform() -> None:
    feats = torch.rand(1, 2, 3, 3, requires_grad=True)
    score = -(feats.mean(dim=(2, 3)).sum(1))  # negative gradients: ReLU leaves nothing
    gam = gradient_attention_map(feats, score)
    torch.testing.assert_close(gam, torch.full((1, 3, 3), 1 / 9))


def test_gradient_reversal_flips_the_sign() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = grad_reverse(x, 0.3)
    torch.testing.assert_close(y, x)
    (y * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * torch.arange(3.0).expand(4, 3))


def test_erasing_zeroes_exactly_the_top_cells() -> None:
    gam = torch.zeros(2, 4, 4)
    gam[0, 0, 0], gam[0, 2, 3], gam[0, 1, 1] = 0.5, 0.4, 0.1
    gam[1, 3, 3], gam[1, 0, 2], gam[1, 3, 0] = 0.6, 0.3, 0.1
    cells = top_cells(gam, 2)
    assert cells.sum().item() == 4
    assert cells[0, 0, 0] and cells[0, 2, 3] and cells[1, 3, 3] and cells[1, 0, 2]
    images = torch.rand(2, 3, 56, 56) + 0.5  # strictly positive
    erased = erase_cells(images, cells)
    expected = images.clone()
    for b, (i, j) in [(0, (0, 0)), (0, (2, 3)), (1, (3, 3)), (1, (0, 2))]:
        expected[b, :, 14 * i : 14 * (i + 1), 14 * j : 14 * (j + 1)] = 0.0  # 56 / 4 = 14 px per cell
    torch.testing.assert_close(erased, expected, rtol=0, atol=0)
    assert int((erased == 0).sum()) == 4 * 3 * 14 * 14
    mean = erase_cells(images, cells, fill="mean")
    torch.testing.assert_close(mean[0, :, 0, 0], images[0].mean(dim=(1, 2)))
    with pytest.raises(ValueError, match="fill"):
        erase_cells(images, cells, fill="noise")  # type: ignore[arg-type]


def test_area_and_warmup() -> None:
    uniform = torch.full((1, 4, 4), 1 / 16)
    peaked = torch.zeros(1, 4, 4)
    peaked[0, 0, :2] = 0.5
    assert attention_area(uniform).item() == 0.0 and attention_area(peaked).item() == 2 / 16
    assert [warmup_factor(s, 10) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0] and warmup_factor(3, 0) == 1.0


# ------------------------------------------------------------------ the callback
def _batch(n: int = 8, groups: bool = True) -> FaceBatch:
    out = FaceRenderer(image_size=56).render(np.arange(n) % 8, np.arange(n))
    return FaceBatch(
        images=(torch.from_numpy(out.images).permute(0, 3, 1, 2).float() / 127.5 - 1).contiguous(),
        labels=torch.from_numpy(out.labels),
        group=torch.arange(n) % 4 if groups else None,
    )


def test_double_backward_gives_finite_gradients_and_reaches_the_backbone() -> None:
    torch.manual_seed(0)
    module = tiny_module()
    method = GABN(warmup=0, lambda_adv=0.5)
    module.attach_methods([method])
    batch = _batch()
    loss = module.training_step(batch, 0)
    loss.backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert module.method_modules["gabn"].net[0].weight.grad.abs().sum() > 0

    # The adversarial term alone reaches the backbone only through the reversed gradient.
    conv = module.backbone.conv1.weight
    def adversarial_grad(lam: float) -> torch.Tensor:
        method.lambda_adv = lam
        out = module.forward_train(batch.images, batch.labels)
        term = method.loss_terms(StepContext(batch, out=out), module)["adversarial"]
        (g,) = torch.autograd.grad(term, conv)
        return g
    assert adversarial_grad(0.0).abs().sum() == 0
    g = adversarial_grad(0.5)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_erased_term_after_warmup_only() -> None:
    module = tiny_module()
    module.attach_methods([GABN(adversarial=False, warmup=0)])
    out = module.forward_train(_batch().images, _batch().labels)
    terms = module.methods[0].loss_terms(StepContext(_batch(), out=out), module)
    assert set(terms) == {"erased_ce"} and terms["erased_ce"].item() > 0
    late = tiny_module()
    late.attach_methods([GABN(adversarial=False, warmup=100)])
    out = late.forward_train(_batch().images, _batch().labels)
    assert late.methods[0].loss_terms(StepContext(_batch(), out=out), late)["erased_ce"].item() == 0.0


def test_missing_group_and_bad_settings_are_clear_errors() -> None:
    module = tiny_module()
    module.attach_methods([GABN()])
    with pytest.raises(ValueError, match=r"GABN needs `group`"):
        module.training_step(_batch(groups=False), 0)
    with pytest.raises(ValueError, match="group labels must be in 0..1"):
        two = tiny_module()
        two.attach_methods([GABN(num_groups=2)])
        two.training_step(_batch(), 0)
    with pytest.raises(ValueError, match="both parts are switched off"):
        GABN(adversarial=False, erase=False)
    # PartialFC on one device scores this batch's rows: GABN works with it.
    single = tiny_module(classifier=lambda d, c: PartialFC(d, c, sample_rate=0.5))
    single.attach_methods([GABN(warmup=0)])
    assert torch.isfinite(single.training_step(_batch(), 0))


def test_discriminator_only_with_the_adversarial_part() -> None:
    module = tiny_module()
    assert GABN(adversarial=False).build(module) is None
    disc = GABN().build(module)
    assert disc is not None and disc.net[0].in_features == 16  # a 4x4 map at 56 px


# ------------------------------------------------------------------ fairness evaluation
def test_fairness_summary() -> None:
    s = fairness_summary({"a": 0.9, "b": 0.8, "c": 0.95, "d": 0.85})
    assert math.isclose(s["mean"], 0.875) and math.isclose(s["std"], np.std([0.9, 0.8, 0.95, 0.85]))
    assert math.isclose(s["ser"], 0.2 / 0.05) and s["min"] == 0.8 and s["max"] == 0.95
    assert fairness_summary({"a": 1.0, "b": 1.0})["ser"] == 1.0
    assert fairness_summary({"a": 1.0, "b": 0.9})["ser"] == float("inf")
    with pytest.raises(ValueError, match="two groups"):
        fairness_summary({"a": 0.9})


def test_group_sets_are_found_by_meta_or_rfw_name() -> None:
    dm = FaceDataModule(
        train=SyntheticSource(num_identities=8, samples_per_identity=2),
        val_sets=[SyntheticPairs("synth-lfw", pairs=20), *group_val_sets(pairs=20)],
        image_size=56,
        num_workers=0,
    )
    dm.setup("fit")
    found = find_group_sets(dm.pair_sets("validate"))
    assert [p.name for p in found] == [f"synth-rfw-g{g}" for g in range(4)]
    assert all(int(p.meta["group"][0]) == g for g, p in enumerate(found))
    rfw = [PairSet(n, np.zeros(1, bool), lambda i: i) for n in ("lfw", "African", "Asian")]
    assert [p.name for p in find_group_sets(rfw)] == ["African", "Asian"]
    with pytest.raises(ValueError, match="not among the verification sets"):
        find_group_sets(rfw, ["Indian"])


def test_overlays_blend_heat_over_the_face() -> None:
    images = np.full((1, 8, 8, 3), 100, np.uint8)
    gam = np.zeros((1, 2, 2), np.float32)
    gam[0, 0, 0] = 1.0
    out = attention_overlays(images, gam)
    assert out.shape == images.shape and out.dtype == np.uint8 and not np.array_equal(out[0, 0, 0], out[0, 7, 7])


def _group_data() -> FaceDataModule:
    return FaceDataModule(
        train=SyntheticSource(num_identities=8, samples_per_identity=4),
        val_sets=[SyntheticPairs("synth-lfw", pairs=20), *group_val_sets(pairs=20)],
        image_size=56,
        batch_size=8,
        val_batch_size=40,
        num_workers=0,
    )


def test_fit_logs_method_and_fairness_metrics_and_saves_plots(tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, callbacks=[GABN(warmup=1)], max_epochs=1, limit_train_batches=3)
    trainer.fit(tiny_module(), _group_data())
    m = trainer.callback_metrics
    for key in ("train/loss/gabn/adversarial", "train/loss/gabn/erased_ce", "train/gabn/disc_acc", "val/fairness/std", "val/fairness/ser"):
        assert key in m and torch.isfinite(m[key]), key
    assert any(k.startswith("train/gabn/area_g") for k in m)
    assert m["train/loss/gabn/erased_ce"] > 0  # erasing ran after the 1-step warm-up
    accs = [float(m[f"val/synth-rfw-g{g}/acc"]) for g in range(4)]
    assert math.isclose(float(m["val/fairness/std"]), float(np.std(accs)), rel_tol=1e-5)
    assert list((tmp_path / "plots").glob("val_fairness_step*.png"))
    assert list((tmp_path / "plots").glob("val_gam_step*.png"))


def test_fairness_is_silent_without_group_sets(tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(tiny_module(), FaceDataModule(
        train=SyntheticSource(num_identities=8, samples_per_identity=2),
        val_sets=[SyntheticPairs("synth-lfw", pairs=20)], image_size=56, batch_size=8, num_workers=0,
    ))
    assert "val/synth-lfw/acc" in trainer.callback_metrics
    assert not any(k.startswith("val/fairness") for k in trainer.callback_metrics)
    assert any(isinstance(cb, FairnessEvaluation) for cb in trainer.callbacks)


@pytest.mark.distributed
@pytest.mark.timeout(180)
def test_gabn_trains_under_two_process_ddp(tmp_path: Path) -> None:
    """Double backward and the erased second pass run through DDP (gloo, 2 processes)."""
    trainer = tiny_trainer(
        tmp_path,
        callbacks=[GABN(warmup=1)],
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        devices=2,
        strategy="ddp_spawn",
    )
    module = tiny_module()
    trainer.fit(module, _group_data())
    assert trainer.state.finished
    # ddp_spawn returns rank 0's metrics: both terms were computed and finite.
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss/gabn/adversarial"]) and m["train/loss/gabn/erased_ce"] > 0
    assert torch.isfinite(m["train/loss"])
