"""Low-resolution method: LogExp and degradation cores, the LowRes callback, the evaluation."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fr_lightning.batch import FaceBatch
from fr_lightning.data import PairSet
from fr_lightning.eval.lowres import LowResEvaluation, rank1, select_pairs, verification_vs_resolution
from fr_lightning.functional.lowres import degrade, degrade_to, logexp_distance, scale_sizes
from fr_lightning.methods import LowRes, Method
from tests.helpers import tiny_data, tiny_module, tiny_trainer


# --------------------------------------------------------------------------- LogExp
def logexp_reference(x: torch.Tensor, y: torch.Tensor, p: float, mode: str) -> torch.Tensor:
    """The formula as written, in float64, one pair at a time (valid where exp does not overflow)."""
    x, y = x.double(), y.double()
    if mode == "pair":
        per_pair = [torch.log(1 + (torch.exp((xb - yb).abs() ** p) - 1).sum()) / (p * x.shape[1]) for xb, yb in zip(x, y)]
        return torch.stack(per_pair).mean()
    inner = sum((torch.exp((xb - yb).abs() ** p) - 1).sum() for xb, yb in zip(x, y))
    return torch.log(1 + inner) / (p * x.shape[0])


@pytest.mark.parametrize("mode", ["pair", "batch"])
@pytest.mark.parametrize("p", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("scale", [0.05, 1.0, 3.0])
def test_logexp_matches_float64_reference(mode: str, p: float, scale: float) -> None:
    g = torch.Generator().manual_seed(int(10 * p + 100 * scale))
    x = (scale * torch.randn(6, 32, generator=g)).requires_grad_()
    y = (scale * torch.randn(6, 32, generator=g)).requires_grad_()
    x64 = x.detach().double().requires_grad_()
    y64 = y.detach().double().requires_grad_()
    ours = logexp_distance(x, y, p=p, mode=mode)
    ref = logexp_reference(x64, y64, p, mode)
    ours.backward()
    ref.backward()
    assert ours.dtype == torch.float32 and ours.ndim == 0
    torch.testing.assert_close(ours.double(), ref.detach(), rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=2e-4, atol=1e-8)
    torch.testing.assert_close(y.grad.double(), y64.grad, rtol=2e-4, atol=1e-8)


@pytest.mark.parametrize("mode", ["pair", "batch"])
def test_logexp_float64_inputs_stay_float64(mode: str) -> None:
    x, y = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    ours = logexp_distance(x, y, mode=mode)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, logexp_reference(x, y, 1.0, mode), rtol=1e-12, atol=1e-14)


def test_logexp_near_zero_behaves_like_l1() -> None:
    b, d = 4, 64
    x = (1e-3 * torch.randn(b, d)).requires_grad_()
    y = torch.zeros(b, d)
    loss = logexp_distance(x, y)
    loss.backward()
    # d/dx of mean_b (1/D)·Σ|x| is sign(x)/(B·D): LogExp matches it to first order.
    torch.testing.assert_close(x.grad * b * d, torch.sign(x.detach()), rtol=0, atol=0.1)
    torch.testing.assert_close(loss, x.detach().abs().sum(1).mean() / d, rtol=0.05, atol=0)
    # Exactly equal embeddings: zero loss, zero gradient (no NaN from the log of zero).
    z = torch.zeros(b, d, requires_grad=True)
    zero = logexp_distance(z, torch.zeros(b, d))
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(z.grad, torch.zeros(b, d))


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 10.0, 1e3])
def test_logexp_gradient_is_bounded_by_the_l1_gradient(scale: float) -> None:
    b, d = 5, 16
    x = (scale * torch.randn(b, d)).requires_grad_()
    logexp_distance(x, torch.zeros(b, d)).backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().max().item() <= (1.0 / (b * d)) * (1 + 1e-4)


def test_logexp_concentrates_the_gradient_on_one_large_error() -> None:
    b, d = 3, 32
    diff = 0.05 * torch.randn(b, d, generator=torch.Generator().manual_seed(1))
    diff[:, 7] = 8.0
    x = diff.clone().requires_grad_()
    logexp_distance(x, torch.zeros(b, d)).backward()
    share = x.grad.abs()[:, 7] / x.grad.abs().sum(1)
    assert (share > 0.95).all(), share
    # L1 would spread it evenly: 1/D per dimension.
    assert (share > 10.0 / d).all()


@pytest.mark.parametrize("mode", ["pair", "batch"])
@pytest.mark.parametrize("big", [1e3, 1e4, -3e4])
def test_logexp_no_overflow_for_large_differences(mode: str, big: float) -> None:
    b, d = 4, 16
    x = torch.randn(b, d).requires_grad_()
    y = x.detach().clone()
    y[:, 3] += big
    y[0, 5] += big / 2
    loss = logexp_distance(x, y, mode=mode)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # log(1 + Σ(e^u − 1)) ≈ log(k·e^max) when k terms share the maximum (one per pair, B in the batch form).
    expected = abs(big) / d if mode == "pair" else (abs(big) + math.log(b)) / b
    torch.testing.assert_close(loss.detach(), torch.tensor(expected), rtol=1e-3, atol=0)
    bf = logexp_distance(x.detach().bfloat16(), y.bfloat16(), mode=mode)
    assert bf.dtype == torch.float32 and torch.isfinite(bf)


def test_logexp_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        logexp_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        logexp_distance(torch.zeros(2, 3), torch.zeros(2, 3), p=0.0)
    with pytest.raises(ValueError):
        logexp_distance(torch.zeros(2, 3), torch.zeros(2, 3), mode="sum")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ degrade
def test_scale_sizes() -> None:
    assert scale_sizes([7, 14, 20], 112) == [7, 14, 20]
    assert scale_sizes([7, 14, 20], 56) == [4, 7, 10]
    assert scale_sizes([8, 0, 1], 28) == [2, 0, 1]
    assert scale_sizes([7, 14], 56, relative_to=0) == [7, 14]


def test_degrade_output_sizes_and_effective_resolution() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 32, 32, generator=g) * 2 - 1
    out, drawn = degrade(images, [4, 8, 12], [0.4, 0.3, 0.3], generator=g)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert drawn.shape == (12,) and set(drawn.tolist()) <= {4, 8, 12}
    assert not torch.equal(out, images)
    # Down to r px and back up is separable linear resampling: each channel has rank <= r.
    for k in range(12):
        ranks = torch.linalg.matrix_rank(out[k].double(), atol=1e-4)
        assert (ranks <= drawn[k]).all(), (k, drawn[k].item(), ranks.tolist())
    torch.testing.assert_close(out[drawn == 8], degrade_to(images[drawn == 8], 8))
    # A size at or above the image size is the identity; a constant image stays constant.
    assert torch.equal(degrade_to(images, 32), images)
    flat = torch.full((2, 3, 32, 32), 0.25)
    torch.testing.assert_close(degrade_to(flat, 5), flat)


def test_degrade_tier_frequencies() -> None:
    sizes, probs, n = [2, 4, 6], [0.5, 0.3, 0.2], 20000
    images = torch.zeros(n, 1, 8, 8)
    _, drawn = degrade(images, sizes, probs, generator=torch.Generator().manual_seed(3))
    counts = np.array([(drawn == s).sum().item() for s in sizes])
    expected = n * np.array(probs)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.8, (counts, chi2)  # chi-square, 2 degrees of freedom, p = 0.001


# ----------------------------------------------------------- LowRes method
def _batch(n: int = 6, size: int = 56, classes: int = 8) -> FaceBatch:
    g = torch.Generator().manual_seed(0)
    return FaceBatch(
        images=torch.rand(n, 3, size, size, generator=g) * 2 - 1,
        labels=torch.arange(n) % classes,
        landmarks=torch.rand(n, 5, 2, generator=g) * size,
        group=torch.arange(n) % 4,
        index=torch.arange(n),
    )


def test_transform_batch_stacks_hr_and_lr_views() -> None:
    module = tiny_module()
    method = LowRes(sizes=[14], probs=[1.0])
    batch = _batch()
    out = method.transform_batch(batch, module)
    assert len(out) == 12
    assert torch.equal(out.images[:6], batch.images)
    expected_lr = degrade_to(batch.images, 7).clamp(-1, 1)  # 14 px at 112 -> 7 px at 56
    torch.testing.assert_close(out.images[6:], expected_lr)
    assert torch.equal(out.hr_images, torch.cat([batch.images, batch.images]))
    for name in ("labels", "landmarks", "group", "index"):
        assert torch.equal(getattr(out, name), torch.cat([getattr(batch, name)] * 2))
    assert out.views == 2 and out.samples == 6
    assert out.pose is None and batch.images.shape[0] == 6 and batch.views == 1  # input untouched


@pytest.mark.parametrize(("ce_lr_weight", "mode"), [(1.0, "pair"), (0.25, "batch")])
def test_total_loss_equals_the_formula(ce_lr_weight: float, mode: str) -> None:
    torch.manual_seed(0)
    module = tiny_module().eval()  # fixed BN statistics, so one joint pass = two separate passes
    method = LowRes(ce_lr_weight=ce_lr_weight, logexp_weight=0.7, logexp_mode=mode)
    module.attach_methods([method])
    batch = _batch()
    total = module.training_step(batch, 0)

    method._draws = 0  # replay the same tier draws
    lr_images = method.transform_batch(batch, module).images[6:]
    with torch.no_grad():
        hr = module.forward_train(batch.images, batch.labels)
        lr = module.forward_train(lr_images, batch.labels)
    ce_hr, ce_lr = hr.per_sample_loss.double().mean(), lr.per_sample_loss.double().mean()
    supervised = (ce_hr + ce_lr_weight * ce_lr) / (1 + ce_lr_weight)  # = ½(CE_HR + CE_LR) at weight 1
    expected = supervised + 0.7 * logexp_reference(hr.embeddings, lr.embeddings, 1.0, mode)
    torch.testing.assert_close(total.detach().double(), expected, rtol=1e-4, atol=1e-5)


def test_fit_logs_terms_and_resumes(tmp_path: Path) -> None:
    evaluation = LowResEvaluation(sizes=[8, 16, 0], max_pairs=40, id_identities=10)
    trainer = tiny_trainer(tmp_path, callbacks=[LowRes(), evaluation], max_epochs=1, limit_train_batches=2)
    module = tiny_module()
    trainer.fit(module, tiny_data())
    m = trainer.callback_metrics
    for key in ("train/loss/lowres/logexp", "train/lowres/ce_lr", "train/lowres/frac@7"):
        assert key in m and torch.isfinite(m[key]), key
    fractions = sum(float(v) for k, v in m.items() if k.startswith("train/lowres/frac@"))
    assert fractions == pytest.approx(1.0)
    for r in ("8", "16", "full"):
        assert 0.0 <= float(m[f"val/synth-lowres@{r}/acc"]) <= 1.0
        assert 0.0 <= float(m[f"val/synth-lowres@{r}/rank1"]) <= 1.0
    # Undegraded probes over all pairs reproduce the verification callback's accuracy (up to a
    # pair or two: other batch sizes change the float rounding of the embeddings).
    assert float(m["val/synth-lowres@full/acc"]) == pytest.approx(float(m["val/synth-lfw/acc"]), abs=0.051)
    assert list((tmp_path / "plots").glob("val_lowres_step*.png"))

    ckpt = tmp_path / "two.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["callbacks"]["LowRes"] == {"draws": 2}
    resumed_method = LowRes()
    resumed = tiny_trainer(tmp_path, callbacks=[resumed_method], max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    resumed.fit(tiny_module(), tiny_data(), ckpt_path=ckpt)
    assert resumed.global_step == 4 and resumed_method._draws == 4
    assert torch.isfinite(resumed.callback_metrics["train/loss"])


# -------------------------------------------------------------------- evaluation
def test_select_pairs_strides_over_all_folds() -> None:
    assert select_pairs(10, 0).tolist() == list(range(10))
    picked = select_pairs(6000, 600)
    assert len(picked) == 600 and picked[0] == 0 and picked[-1] == 5999
    assert np.all(np.diff(picked) > 0)


def test_rank1() -> None:
    gallery = np.eye(3, dtype=np.float32)
    probes = np.array([[0.9, 0.1, 0], [0, 0, 1], [1, 0, 0.2]], np.float32)
    assert rank1(gallery, np.array([5, 6, 7]), probes, np.array([5, 7, 6])) == pytest.approx(2 / 3)


def test_pair_based_identification_for_non_synthetic_sets() -> None:
    """A set without a renderer (a .bin) is identified through its same pairs."""
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (40, 24, 24, 3), dtype=np.uint8)
    issame = np.array([True, False] * 10)
    pairs = PairSet("toy", issame, load=lambda idx: faces[idx])

    def embed(images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)

    acc, e1, e2 = verification_vs_resolution(embed, pairs, [0, 6], max_pairs=0)
    assert set(acc) == {0, 6} and e1.shape == (20, 24 * 24 * 3)
    callback = LowResEvaluation(sizes=[12, 0], sizes_relative_to=48)

    class Holder(torch.nn.Module):
        def embed(self, images: torch.Tensor) -> torch.Tensor:
            return images.flatten(1)

    results = callback.evaluate(Holder(), pairs, source=None)
    assert set(results) == {"acc", "rank1"} and set(results["rank1"]) == {12, 0}
    assert results["rank1"][0] <= 1.0
    assert callback.metric_prefix("lfw") == "lfw-lowres" and callback.metric_prefix("synth-lfw") == "synth-lowres"
    # Real-data fragments replace synth-lfw: the first set is evaluated instead (the recipe runs unchanged).
    cfp = PairSet("cfp_fp", issame, load=lambda idx: faces[idx])
    dm = SimpleNamespace(pair_sets=lambda stage: [pairs, cfp], val_sources=[None, None])
    assert callback._find(SimpleNamespace(datamodule=dm), "validate") == (pairs, None)
    assert LowResEvaluation(pairs_from="cfp_fp")._find(SimpleNamespace(datamodule=dm), "validate") == (cfp, None)


# ---------------------------------------------------------------------- stacking
# Every pair of methods (lowres included) is stacked in tests/test_compose.py.


class _Probe(Method):
    """Records the batch sizes a method stacked after LowRes sees in each hook."""

    order = 50

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def transform_batch(self, batch, module):  # type: ignore[no-untyped-def]
        self.seen["transform"] = len(batch)
        self.seen["hr_images"] = 0 if batch.hr_images is None else batch.hr_images.shape[0]
        return batch

    def sample_weights(self, ctx, module):  # type: ignore[no-untyped-def]
        self.seen["weights"] = ctx.output.per_sample_loss.shape[0]
        self.seen["views"] = ctx.batch.views
        return torch.ones(len(ctx.batch))

    def loss_terms(self, ctx, module):  # type: ignore[no-untyped-def]
        self.seen["terms"] = ctx.output.embeddings.shape[0]
        return {}


def test_a_stacked_method_sees_both_views_in_every_hook() -> None:
    module = tiny_module()
    probe = _Probe()
    module.attach_methods([probe, LowRes()])
    assert [type(m).__name__ for m in module.methods] == ["LowRes", "_Probe"]
    loss = module.training_step(_batch(6), 0)
    assert torch.isfinite(loss)
    assert probe.seen == {"transform": 12, "hr_images": 12, "weights": 12, "views": 2, "terms": 12}
