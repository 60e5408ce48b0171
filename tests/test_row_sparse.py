"""Row-sparse Partial FC update: sparse centre gradients, RowSparseSGD, clipping, NaN guard, fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fr_lightning.callbacks import NanGuard
from fr_lightning.classifiers import PartialFC
from fr_lightning.heads import ArcFace
from fr_lightning.optim import RowSparseSGD
from tests.helpers import tiny_data, tiny_module, tiny_trainer


def _sparse_grad(weight: torch.nn.Parameter, rows: torch.Tensor, upstream: torch.Tensor) -> None:
    (F.embedding(rows, weight, sparse=True) * upstream).sum().backward()


@pytest.mark.parametrize("nesterov", [False, True])
def test_all_rows_touched_equals_torch_sgd(nesterov: bool) -> None:
    torch.manual_seed(0)
    init = torch.randn(6, 4)
    dense, sparse = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    kw = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    ref, opt = torch.optim.SGD([dense], **kw), RowSparseSGD([sparse], **kw)
    rows = torch.arange(6)
    for step in range(3):
        up = torch.randn(6, 4)
        (dense * up).sum().backward()
        _sparse_grad(sparse, rows, up)
        assert sparse.grad.is_sparse
        ref.step(), opt.step()
        ref.zero_grad(set_to_none=True), opt.zero_grad(set_to_none=True)
        torch.testing.assert_close(sparse, dense)
    torch.testing.assert_close(opt.state[sparse]["momentum_buffer"], ref.state[dense]["momentum_buffer"])


def test_untouched_rows_keep_weight_and_momentum() -> None:
    w = torch.nn.Parameter(torch.randn(8, 3))
    before = w.detach().clone()
    opt = RowSparseSGD([w], lr=0.5, momentum=0.9, weight_decay=0.1)
    _sparse_grad(w, torch.tensor([1, 4, 4]), torch.ones(3, 3))  # row 4 twice: gradients add up
    opt.step()
    changed = (w.detach() != before).any(dim=1)
    assert changed.tolist() == [False, True, False, False, True, False, False, False]
    expected4 = before[4] - 0.5 * (2.0 + 0.1 * before[4])
    torch.testing.assert_close(w.detach()[4], expected4)
    buf = opt.state[w]["momentum_buffer"]
    assert (buf[[0, 2, 3, 5, 6, 7]] == 0).all()


def test_partial_fc_sparse_grad_holds_the_sampled_rows_only() -> None:
    emb, labels = torch.randn(6, 8), torch.tensor([0, 3, 3, 7, 9, 1])
    grads = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        fc = PartialFC(8, 40, sample_rate=0.25, sparse_grad=sparse)
        cosine, target = fc(emb, labels)
        fc.cross_entropy(ArcFace(s=16.0, m=0.3)(cosine, target), target).mean().backward()
        grads[sparse] = (fc.weight.grad, fc.last_index)
    sparse_grad, index = grads[True]
    assert sparse_grad.is_sparse and sparse_grad.coalesce().indices()[0].tolist() == index.tolist()
    torch.testing.assert_close(sparse_grad.to_dense(), grads[False][0])
    assert not PartialFC(8, 40, sample_rate=1.0, sparse_grad=True).sparse_grad  # nothing to sample: dense


def _module(**kwargs: object):
    return tiny_module(classifier=lambda d, c: PartialFC(d, c, sample_rate=0.5, sparse_grad=True), **kwargs)


def test_fit_with_sparse_centres_clipping_and_nan_guard(tmp_path: Path) -> None:
    module = _module()
    trainer = tiny_trainer(tmp_path, callbacks=[NanGuard()], max_epochs=1, limit_train_batches=3, limit_val_batches=0, gradient_clip_val=0.01)
    before = module.classifier.weight.detach().clone()
    trainer.fit(module, tiny_data())
    assert isinstance(trainer.optimizers[0], RowSparseSGD)
    assert trainer.global_step == 3 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert not torch.equal(before, module.classifier.weight.detach())


def test_sparse_grad_with_another_optimizer_is_a_clear_error(tmp_path: Path) -> None:
    module = _module(optimizer=lambda groups: torch.optim.AdamW(groups, lr=1e-3))
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    with pytest.raises(ValueError, match="sparse_grad: true, which needs SGD"):
        trainer.fit(module, tiny_data())


def test_clipping_scales_sparse_and_dense_gradients_together() -> None:
    module = _module()
    opt = RowSparseSGD(module.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.rand(8, 3, 56, 56) * 2 - 1, torch.arange(8)
    out = module.forward_train(images, labels)
    out.per_sample_loss.mean().backward()
    assert module.classifier.weight.grad.is_sparse
    module.configure_gradient_clipping(opt, gradient_clip_val=1e-3, gradient_clip_algorithm="norm")
    norms = [p.grad.coalesce()._values().norm() if p.grad.is_sparse else p.grad.norm() for p in module.parameters() if p.grad is not None]
    torch.testing.assert_close(torch.stack(norms).norm(), torch.tensor(1e-3), rtol=1e-3, atol=0)


def test_sampled_cosine_gradients_match_autograd_through_normalize() -> None:
    from fr_lightning.classifiers.partial_fc import SampledCosine

    g = torch.Generator().manual_seed(3)
    x = F.normalize(torch.randn(5, 6, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    weight = torch.randn(20, 6, generator=g, dtype=torch.float64).requires_grad_()
    rows = torch.tensor([2, 5, 11, 19])
    up = torch.randn(5, 4, generator=g, dtype=torch.float64)
    ref = x @ F.normalize(weight[rows], dim=1).t()
    ref_gx, ref_gw = torch.autograd.grad((ref * up).sum(), (x, weight))
    for sparse in (False, True):
        out = SampledCosine.apply(x, weight, rows, sparse)
        torch.testing.assert_close(out, ref)
        gx, gw = torch.autograd.grad((out * up).sum(), (x, weight))
        torch.testing.assert_close(gx, ref_gx)
        torch.testing.assert_close(gw.to_dense() if sparse else gw, ref_gw)


def test_lean_cross_entropy_equals_torch() -> None:
    from fr_lightning.classifiers.partial_fc import LeanCrossEntropy

    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(6, 9, generator=g, dtype=torch.float64) * 10).requires_grad_()
    labels = torch.tensor([0, 8, -1, 3, 3, -1])
    up = torch.rand(6, generator=g, dtype=torch.float64)
    ref = F.cross_entropy(logits, labels, reduction="none", ignore_index=-1)
    (ref_g,) = torch.autograd.grad((ref * up).sum(), logits)
    out = LeanCrossEntropy.apply(logits, labels)
    torch.testing.assert_close(out, ref)
    (got,) = torch.autograd.grad((out * up).sum(), logits)
    torch.testing.assert_close(got, ref_g)
