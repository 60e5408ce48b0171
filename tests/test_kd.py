"""KD (knowledge distillation): functional core against references, the teacher, and the callback in a fit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fr_lightning.backbones import MobileFaceNet
from fr_lightning.batch import FaceBatch
from fr_lightning.functional.kd import (
    calibrate_reorder,
    calibrate_translate,
    feature_loss,
    logit_kd,
    nd_loss,
    teacher_class_means,
)
from fr_lightning.methods import KD
from fr_lightning.methods.kd import CACHE_NAME
from fr_lightning.methods.teacher import load_teacher
from tests.helpers import tiny_data, tiny_module, tiny_teacher, tiny_teacher_backbone, tiny_trainer


# ------------------------------------------------------------------ functional core
def _nd_reference(x_s: torch.Tensor, x_t: torch.Tensor, labels: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """ND from the formula, one sample at a time, in float64."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(x_s.shape[0]):
        xs, xt = x_s[i].double(), x_t[i].double()
        e = means[labels[i]].double()
        e = e / e.norm()
        total = total + 1.0 - (xs @ e) / max(xs.norm(), xt.norm())
    return total / x_s.shape[0]


@pytest.mark.parametrize("regime", ["student_larger", "teacher_larger"])
def test_nd_loss_matches_float64_reference(regime: str) -> None:
    g = torch.Generator().manual_seed(1)
    x_s, x_t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    x_s = x_s / x_s.norm(dim=1, keepdim=True) * (10.0 if regime == "student_larger" else 2.0)
    x_t = x_t / x_t.norm(dim=1, keepdim=True) * 5.0
    labels = torch.tensor([0, 1, 2, 0, 3, 1])
    means = torch.randn(4, 5, generator=g)
    xs = x_s.clone().requires_grad_(True)
    loss = nd_loss(xs, x_t, labels, means)
    loss.backward()
    xr = x_s.double().clone().requires_grad_(True)
    ref = _nd_reference(xr, x_t, labels, means)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(xs.grad.double(), xr.grad, rtol=1e-4, atol=1e-6)


def test_nd_loss_ignores_unlabelled_rows() -> None:
    x = torch.randn(4, 3)
    labels = torch.tensor([0, -1, 1, -1])
    means = torch.randn(2, 3)
    expected = nd_loss(x[[0, 2]], x[[0, 2]], labels[[0, 2]], means)
    assert nd_loss(x, x, labels, means).item() == pytest.approx(expected.item())


def test_feature_loss_kinds() -> None:
    x_s, x_t = torch.randn(5, 8), torch.randn(5, 8)
    cos = torch.nn.functional.cosine_similarity(x_s.double(), x_t.double())
    assert feature_loss(x_s, x_t, "cosine").item() == pytest.approx((1 - cos).mean().item(), rel=1e-5)
    assert feature_loss(x_s, x_t, "mse").item() == pytest.approx((2 - 2 * cos).mean().item(), rel=1e-5)
    assert feature_loss(x_s, 3.0 * x_s).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        feature_loss(x_s, x_t[:, :4])


def test_logit_kd_matches_reference() -> None:
    z_s, z_t, temp = torch.randn(4, 7), torch.randn(4, 7), 4.0
    p_t = torch.softmax(z_t.double() / temp, 1)
    p_s = torch.softmax(z_s.double() / temp, 1)
    ref = temp**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    assert logit_kd(z_s, z_t, temp).item() == pytest.approx(ref.item(), rel=1e-5)
    assert logit_kd(z_t, z_t, temp).item() == pytest.approx(0.0, abs=1e-6)


def test_calibration_leaves_a_right_teacher_unchanged() -> None:
    z = torch.tensor([[3.0, 1.0, 2.0], [0.5, 0.1, 4.0]])
    labels = torch.tensor([0, 2])
    assert torch.equal(calibrate_translate(z, labels, 1.0), z)
    assert torch.equal(calibrate_reorder(z, labels), z)


def test_translate_makes_the_true_class_top_by_delta() -> None:
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    out = calibrate_translate(z, torch.tensor([2]), delta=1.0)
    assert torch.equal(out, torch.tensor([[3.0, 1.0, 4.0, 0.0]]))
    assert torch.equal(z, torch.tensor([[3.0, 1.0, 2.0, 0.0]]))  # input untouched


def test_reorder_puts_the_true_class_on_top_and_keeps_the_others_order() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 9, generator=g)
    labels = torch.randint(0, 9, (16,), generator=g)
    out = calibrate_reorder(z, labels)
    assert torch.equal(out.argmax(1), labels)
    for row, y in zip(range(16), labels.tolist()):
        assert torch.equal(out[row].sort().values, z[row].sort().values)  # same values, permuted
        others = [j for j in range(9) if j != y]
        before = sorted(others, key=lambda j: -z[row, j].item())
        after = sorted(others, key=lambda j: -out[row, j].item())
        assert before == after
    # Concrete case: values [1, 4, 3, 2], true class 3 -> 3 gets 4, then 1 (was 2nd) 3, 2 (was 3rd) 2, 0 1.
    out = calibrate_reorder(torch.tensor([[1.0, 4.0, 3.0, 2.0]]), torch.tensor([3]))
    assert torch.equal(out, torch.tensor([[1.0, 3.0, 2.0, 4.0]]))


def test_teacher_class_means() -> None:
    emb = torch.tensor([[2.0, 0.0], [0.0, 1.0], [4.0, 0.0], [5.0, 5.0]])
    labels = torch.tensor([0, 1, 0, -1])
    means = teacher_class_means([(emb[:2], labels[:2]), (emb[2:], labels[2:])], num_classes=3)
    torch.testing.assert_close(means, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))


# ------------------------------------------------------------------------ teacher
def test_teacher_loads_both_formats_frozen(tmp_path: Path) -> None:
    ckpt = load_teacher(tiny_teacher(tmp_path / "t.ckpt"), tiny_teacher_backbone())
    bare = load_teacher(tiny_teacher(tmp_path / "backbone.pth", num_classes=None), tiny_teacher_backbone())
    assert ckpt.centres is not None and ckpt.centres.shape == (8, 48)
    assert bare.centres is None
    for teacher in (ckpt, bare):
        assert not teacher.backbone.training
        assert all(not p.requires_grad for p in teacher.backbone.parameters())
    x = torch.randn(2, 3, 56, 56)
    torch.testing.assert_close(ckpt.embed(x), bare.embed(x))


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_teacher(tmp_path / "missing.ckpt", tiny_teacher_backbone())
    path = tiny_teacher(tmp_path / "t.ckpt")
    with pytest.raises(ValueError, match=r"t\.ckpt.*MobileFaceNet.*(missing|unexpected): "):
        load_teacher(path, MobileFaceNet(embedding_dim=48, width=0.25, input_size=56))
    with pytest.raises(ValueError, match="shape mismatch"):
        load_teacher(path, tiny_teacher_backbone(embedding_dim=64))
    with pytest.raises(ValueError, match="teacher_backbone"):
        load_teacher(path, None)
    with pytest.raises(ValueError, match="projector"):
        tiny_module().attach_methods([KD(teacher=str(path), teacher_backbone=tiny_teacher_backbone(), projector=False)])
    bare = tiny_teacher(tmp_path / "backbone.pth", num_classes=None)
    with pytest.raises(ValueError, match="logit_weight"):
        tiny_module().attach_methods([KD(teacher=str(bare), teacher_backbone=tiny_teacher_backbone(), logit_weight=1.0)])
    with pytest.raises(ValueError, match="method kd needs teacher"):
        tiny_module().attach_methods([KD()])


@pytest.mark.parametrize("teacher_dim", [32, 48])
def test_projector_only_when_dims_differ(teacher_dim: int, tmp_path: Path) -> None:
    path = tiny_teacher(tmp_path / "t.ckpt", embedding_dim=teacher_dim)
    module = tiny_module()
    module.attach_methods([KD(teacher=str(path), teacher_backbone=tiny_teacher_backbone(teacher_dim))])
    if teacher_dim == 32:
        assert "kd" not in module.method_modules
    else:
        proj = module.method_modules["kd"]
        assert isinstance(proj, torch.nn.Linear) and (proj.in_features, proj.out_features) == (32, 48)


def _batch(n: int = 6, size: int = 56) -> FaceBatch:
    g = torch.Generator().manual_seed(3)
    return FaceBatch(images=torch.rand(n, 3, size, size, generator=g) * 2 - 1, labels=torch.arange(n) % 8)


def test_teacher_sees_hr_images_and_gets_no_gradient(tmp_path: Path) -> None:
    path = tiny_teacher(tmp_path / "t.ckpt")
    method = KD(teacher=str(path), teacher_backbone=tiny_teacher_backbone(), nd_weight=1.0, logit_weight=1.0)
    module = tiny_module()
    module.attach_methods([method])
    seen: list[torch.Tensor] = []
    method.teacher.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    batch = _batch()
    hr = batch.images.flip(3)
    loss = module.training_step(batch.replace(hr_images=hr), 0)
    assert torch.equal(seen[-1], hr)
    loss.backward()
    assert all(p.grad is None for p in method.teacher.backbone.parameters())
    assert module.method_modules["kd"].weight.grad is not None
    assert module.backbone.conv1.weight.grad is not None
    assert not any("teacher" in k for k in module.state_dict())


# ---------------------------------------------------------------------------- fit
def test_fit_save_resume_with_class_means_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare backbone teacher (no classifier): ND needs the teacher pass, cached and reused on resume."""
    path = tiny_teacher(tmp_path / "backbone.pth", num_classes=None)

    def fit(steps: int, ckpt_path: str | None = None) -> tuple[KD, object]:
        method = KD(teacher=str(path), teacher_backbone=tiny_teacher_backbone(), nd_weight=1.0, feature_kind="mse")
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        trainer = tiny_trainer(tmp_path, callbacks=[method, ckpt], max_steps=steps, limit_val_batches=0, enable_checkpointing=True)
        trainer.fit(tiny_module(), tiny_data(), ckpt_path=ckpt_path)
        return method, trainer

    method, trainer = fit(2)
    assert trainer.global_step == 2
    for term in ("feature", "nd"):
        assert math.isfinite(float(trainer.callback_metrics[f"train/loss/kd/{term}"]))
    assert (tmp_path / CACHE_NAME).is_file()
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("method_modules.kd.") for k in state)
    student_keys = set(tiny_module().state_dict()) | {"method_modules.kd.weight", "method_modules.kd.bias"}
    assert set(state) == student_keys  # nothing of the teacher in the student's checkpoint

    def no_pass(*args: object) -> None:
        raise AssertionError("the class means should come from the cache on resume")

    monkeypatch.setattr(KD, "_teacher_pass", no_pass)
    _, trainer = fit(4, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert trainer.global_step == 4


def test_logit_warmup_ramps(tmp_path: Path) -> None:
    path = tiny_teacher(tmp_path / "t.ckpt", embedding_dim=32)
    method = KD(teacher=str(path), teacher_backbone=tiny_teacher_backbone(32), feature_weight=0.0, logit_weight=1.0, logit_warmup_epochs=2.0)
    trainer = tiny_trainer(tmp_path, callbacks=[method], max_epochs=1, limit_train_batches=2, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(tiny_module(), tiny_data())
    assert trainer.global_step == 2
    # Step 0 has ramp 0 -> the logged (epoch-mean) logit term comes only from step 1 at ramp 1/4.
    assert float(trainer.callback_metrics["train/loss/kd/logit"]) > 0
