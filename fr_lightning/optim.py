"""Optimisation pieces for row-sparse class centres: the optimizer choice, its step, and gradient clipping.

``PartialFC(sparse_grad=True)`` gives its centres a sparse COO gradient over the sampled rows.
:func:`row_sparse_optimizer` swaps the configured SGD for :class:`RowSparseSGD` (which steps
only those rows) and :func:`clip_sparse_gradients_` clips such gradients through their values;
the module calls both, so it needs no knowledge of sparse tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class RowSparseSGD(torch.optim.SGD):
    """``torch.optim.SGD`` for dense parameters; a row-sparse update for sparse-gradient ones.

    For a parameter whose gradient is a sparse COO tensor over rows (as
    ``PartialFC(sparse_grad=True)`` produces), only the touched rows ``R`` change:

    ``d = g_R + wd·w_R``; ``buf_R = μ·buf_R + (1 − dampening)·d`` (the buffer starts at zero: the
    same first step as ``torch.optim.SGD`` when ``dampening = 0``);
    ``w_R -= lr·(d + μ·buf_R if nesterov else buf_R)``.

    Untouched rows keep their weight and momentum (lazy momentum, as Partial FC v1), so the
    dense gradient and the weight-decay temporary (each the size of the whole centre matrix) are
    never built. The momentum buffer is dense and stored as ``momentum_buffer`` like
    ``torch.optim.SGD``'s, so checkpoints keep the same layout. ``maximize`` is not supported on
    sparse parameters.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hidden: list[tuple[torch.nn.Parameter, Tensor, dict[str, Any]]] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    hidden.append((p, p.grad, group))
                    p.grad = None
        try:
            super().step()
        finally:
            for p, grad, _ in hidden:
                p.grad = grad
        for p, grad, group in hidden:
            self._sparse_update(p, grad, group)
        return loss

    def _sparse_update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        if group.get("maximize", False):
            raise ValueError("RowSparseSGD: maximize=True is not supported for sparse gradients")
        grad = grad.coalesce()
        rows = grad.indices()[0]
        # In-place arithmetic on row-sized tensors only: no temporary the size of the whole matrix,
        # and as few row-sized ones as possible (a Partial FC sample can be 10^5 rows x 512).
        d = grad.values().to(p.dtype, copy=True).reshape(rows.numel(), *p.shape[1:])
        wd, momentum, lr = group["weight_decay"], group["momentum"], group["lr"]
        if wd:
            d.add_(p.index_select(0, rows), alpha=wd)
        if momentum:
            state = self.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            new = buf.index_select(0, rows).mul_(momentum).add_(d, alpha=1.0 - group["dampening"])
            buf.index_copy_(0, rows, new)
            if group["nesterov"]:
                d.add_(new, alpha=momentum)
            else:
                d = new
        p.index_add_(0, rows, d, alpha=-lr)


def row_sparse_optimizer(optimizer: torch.optim.Optimizer, sparse_grad: bool) -> torch.optim.Optimizer:
    """The optimizer that steps a classifier with ``sparse_grad``: the same SGD as :class:`RowSparseSGD`.

    Args:
        optimizer: the optimizer built from the configured class and parameter groups.
        sparse_grad: whether the classifier's centres get row-sparse gradients; False returns
            ``optimizer`` unchanged.

    Raises:
        ValueError: for a sparse classifier with any optimizer other than ``torch.optim.SGD``.
    """
    if not sparse_grad or isinstance(optimizer, RowSparseSGD):
        return optimizer
    if type(optimizer) is not torch.optim.SGD:
        raise ValueError(
            f"model.init_args.classifier has sparse_grad: true, which needs SGD as model.init_args.optimizer "
            f"(got {type(optimizer).__name__}); use torch.optim.SGD or set sparse_grad: false"
        )
    return RowSparseSGD(optimizer.param_groups, **optimizer.defaults)


def clip_sparse_gradients_(optimizer: torch.optim.Optimizer, clip_val: float | None, algorithm: str | None) -> bool:
    """Clip every gradient of ``optimizer`` in place when one of them is sparse; else do nothing.

    Norm clipping (``algorithm`` None or ``"norm"``) scales all gradients by
    ``min(1, clip_val / (‖g‖ + 1e-6))`` with ``‖g‖`` the global 2-norm over dense gradients and
    sparse gradients' stored values (coalesced first); ``"value"`` clamps each entry.

    Returns:
        True if it clipped (some gradient was sparse); False means the caller should clip the
        ordinary way (Lightning's clipping, which does not accept sparse gradients).
    """
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not clip_val or not any(p.grad.is_sparse for p in params):
        return False
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    values = [p.grad._values() if p.grad.is_sparse else p.grad for p in params]  # views: edited in place
    if algorithm in (None, "norm"):
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v.float()) for v in values]))
        scale = (float(clip_val) / (total + 1e-6)).clamp(max=1.0)
        for v in values:
            v.mul_(scale.to(v.dtype))
    else:
        for v in values:
            v.clamp_(-float(clip_val), float(clip_val))
    return True
