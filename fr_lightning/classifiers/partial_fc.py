"""Partial FC: class centres sharded across ranks, sampled negatives, distributed softmax CE.

Model parallelism as in insightface's ``partial_fc`` (An et al., 2022): every rank holds a
contiguous slice of the class centres, sees the embeddings of the whole global batch (all-gathered)
and computes cosines against its slice only. The softmax over all classes is assembled with three
all-reduces (max, sum of exponentials, target logit). With ``sample_rate < 1`` each rank keeps the
positives of the global batch plus random negatives, up to ``floor(r * C_local)`` classes.

Gradient bookkeeping (so that the numbers equal a single-process full FC on the global batch):

* each rank's loss is the mean over *its own* rows (``cross_entropy`` returns those rows only, so
  method weights and masks keep their ``[B_local]`` shape); DDP averages the backbone gradients,
  i.e. the objective is ``mean_r loss_r``. The distributed CE's backward therefore averages the
  upstream gradient over ranks, which gives every shard the centre gradient of that objective;
* the all-gather's backward sums the embedding gradient over ranks, returns each rank its rows and
  multiplies by the world size, which undoes DDP's averaging of the backbone gradient;
* the sharded weight is listed in the LightningModule's ``_ddp_params_and_buffers_to_ignore``
  (see :meth:`PartialFC.ddp_ignore`), so DDP neither broadcasts it at start nor averages its
  gradient. Lightning's ``DDPStrategy`` wraps the LightningModule itself in
  ``DistributedDataParallel``, so names relative to the module are the names DDP checks.

Checkpoints hold the full ``[C*K, D]`` matrix: a state-dict hook gathers it (a collective, so every
rank must call ``state_dict()`` together, as Lightning's checkpointing does) and a load pre-hook
takes this rank's slice. :meth:`PartialFC.save_optimizer_state` / :meth:`PartialFC.load_optimizer_state`
(called from the module's checkpoint hooks) do the same for the optimizer state of the weight
(momentum, Adam moments), so a run saved on N ranks resumes on M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from fr_lightning.classifiers.base import OPTIMIZER_INDEX_KEY, Classifier, Scores, optimizer_state_of


def shard_bounds(total: int, world: int, rank: int) -> tuple[int, int]:
    """Contiguous ``[start, end)`` of ``total`` items owned by ``rank``; sizes differ by at most one."""
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _all_gather_rows(t: Tensor, sizes: list[int]) -> Tensor:
    """Concatenation over ranks of ``t`` (first dims ``sizes``), padding to the largest for gloo/nccl."""
    longest = max(sizes)
    padded = t if t.shape[0] == longest else torch.cat([t, t.new_zeros(longest - t.shape[0], *t.shape[1:])])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device))
    return [int(s.item()) for s in sizes]


class AllGatherRows(torch.autograd.Function):
    """All-gather along dim 0; backward sums over ranks, keeps this rank's rows, times world size."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, sizes: list[int]) -> Tensor:
        ctx.sizes = sizes
        return _all_gather_rows(t, sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        rank, sizes = dist.get_rank(), ctx.sizes
        start = sum(sizes[:rank])
        # x world size: DDP divides the backbone gradient by it again (see the module docstring).
        return grad[start : start + sizes[rank]] * len(sizes), None


class DistCrossEntropy(torch.autograd.Function):
    """Per-row softmax CE over logits sharded by column; every rank gets the same ``[B]`` losses."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor) -> Tensor:
        logits = logits.float()
        valid = labels >= 0
        top = logits.max(dim=1).values if logits.shape[1] else logits.new_full((logits.shape[0],), -math.inf)
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        exp = (logits - top.unsqueeze(1)).exp()
        total = exp.sum(dim=1)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        shifted = logits.gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1) - top if logits.shape[1] else top * 0
        target = torch.where(valid, shifted, torch.zeros_like(shifted))
        owned = valid.to(logits.dtype)
        stats = torch.stack([target, owned])
        dist.all_reduce(stats, op=dist.ReduceOp.SUM)
        target, owned = stats[0], stats[1] > 0
        ctx.save_for_backward(exp / total.unsqueeze(1), labels)
        # Rows whose label was -1 on every rank (ignored samples) get 0, as FullFC's ignore_index.
        return torch.where(owned, total.log() - target, torch.zeros_like(target))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        prob, labels = ctx.saved_tensors
        # Each rank back-propagates only its own rows; the mean over ranks is the gradient of the
        # DDP objective mean_r(loss_r) for this rank's columns.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        grad = grad / dist.get_world_size()
        valid = labels >= 0
        onehot = torch.zeros_like(prob)
        if prob.shape[1]:
            onehot.scatter_(1, labels.clamp(min=0).unsqueeze(1), valid.to(prob.dtype).unsqueeze(1))
        return (prob - onehot) * grad.unsqueeze(1), None


class SampledCosine(torch.autograd.Function):
    """Cosine of unit rows ``x`` against the sampled centre rows ``weight[rows]``, memory-lean.

    Gathers and normalises the sampled rows into one buffer (no separate gathered copy kept for
    backward) and returns the centres' gradient for those rows only: a sparse COO tensor when
    ``sparse`` (for :class:`fr_lightning.optim.RowSparseSGD`), else a dense one.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, rows: Tensor, sparse: bool) -> Tensor:  # type: ignore[override]
        w = weight.index_select(0, rows)
        if w.dtype in (torch.float16, torch.bfloat16):
            w = w.float()
        norms = torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min_(1e-12)  # as F.normalize
        w.div_(norms)
        ctx.save_for_backward(x, w, norms, rows)
        ctx.sparse, ctx.shape = sparse, weight.shape
        return x @ w.t()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        x, w, norms, rows = ctx.saved_tensors
        grad = grad.to(w.dtype)
        grad_x = (grad @ w).to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            gw = grad.t() @ x.to(w.dtype)  # d loss / d unit rows
            # Through the normalisation: (g − u·(g·u)) / ‖w‖, in place; the row dots as a batched
            # matmul so no second row-sized temporary is made.
            dots = torch.bmm(gw.unsqueeze(1), w.unsqueeze(2)).squeeze(2)
            gw.addcmul_(w, dots, value=-1.0).div_(norms)
            if ctx.sparse:
                # rows are sorted and unique (sorted class sample x sub-centres): already coalesced.
                grad_w = torch.sparse_coo_tensor(rows[None], gw, ctx.shape, is_coalesced=True, check_invariants=False)
            else:
                grad_w = gw.new_zeros(ctx.shape).index_add_(0, rows, gw)
        return grad_x, grad_w, None, None


class LeanCrossEntropy(torch.autograd.Function):
    """Per-row softmax CE that keeps no softmax for backward (rows with label -1 get 0).

    ``F.cross_entropy`` stores a log-softmax as large as the logits until backward; this keeps
    only the logits (which the module holds anyway) and the per-row log-sum-exp, and rebuilds
    the softmax in place during backward. Same values and gradients.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        valid = labels >= 0
        lse = torch.logsumexp(logits, dim=1)
        picked = logits.gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1)
        ctx.save_for_backward(logits, lse, labels)
        return torch.where(valid, lse - picked, torch.zeros_like(lse))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        logits, lse, labels = ctx.saved_tensors
        valid = labels >= 0
        g = (logits - lse.unsqueeze(1)).exp_()
        rows = torch.nonzero(valid).squeeze(1)
        g[rows, labels[rows]] -= 1.0
        g.mul_((grad * valid).unsqueeze(1).to(g.dtype))
        return g, None


class PartialFC(Classifier):
    """Model-parallel, sampled classifier (Partial FC); equals :class:`FullFC` for r=1 on one device.

    ``forward`` returns cosines of the *global* batch (all ranks' rows) against this rank's sampled
    centres, with labels remapped to sampled local columns (-1 where the positive lives elsewhere).
    ``cross_entropy`` returns the loss of this rank's own rows. ``predict`` is the nearest centre
    among this rank's sampled columns, so the module's ``train/acc`` is the accuracy on the local
    shard (rows whose positive this rank owns). Non-softmax heads (SFace) need the full row and are
    not supported with more than one rank.

    Args:
        embedding_dim: size of the backbone's embedding.
        num_classes: number of identities (linked from the data module by the CLI).
        sample_rate: fraction r of each rank's classes used per step (all positives always kept).
        subcenters: centres per class (Sub-center ArcFace); a class is sampled with all its K centres.
        sparse_grad: give the centres a row-sparse gradient (only the sampled rows) when
            ``sample_rate < 1``; the module then steps them with :class:`fr_lightning.optim.RowSparseSGD`
            (lazy momentum and weight decay on the sampled rows only, as Partial FC v1), so no
            dense centre-sized gradient is ever built. Needs SGD as the optimizer.
    """

    def __init__(
        self,
        embedding_dim: int = 512,
        num_classes: int = 1000,
        sample_rate: float = 1.0,
        subcenters: int = 1,
        sparse_grad: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"PartialFC sample_rate must be in (0, 1], got {sample_rate}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.sample_rate = sample_rate
        self.subcenters = subcenters
        self.sparse_grad = bool(sparse_grad) and sample_rate < 1.0
        self.world_size, self.rank = 1, 0
        self._sizes: list[int] = []
        self.class_start, self.class_end = 0, num_classes
        # Full matrix at construction (one device needs it; ranks then keep their slice), so a
        # sharded run starts from the same centres as a single-device run with the same seed.
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.register_state_dict_post_hook(PartialFC._full_state_hook)
        self.register_load_state_dict_pre_hook(PartialFC._load_slice_hook)

    # ------------------------------------------------------------- sharding
    def setup(self, world_size: int, rank: int) -> None:
        """Keep only this rank's contiguous slice of classes (idempotent; call before the optimizer)."""
        if (world_size, rank) == (self.world_size, self.rank):
            return
        if self.world_size != 1:
            raise RuntimeError("PartialFC is already sharded for another world size; build a new one")
        start, end = shard_bounds(self.num_classes, world_size, rank)
        k = self.subcenters
        self.weight = nn.Parameter(self.weight.detach()[start * k : end * k].clone())
        self.world_size, self.rank, self.class_start, self.class_end = world_size, rank, start, end

    @property
    def sharded(self) -> bool:
        """True when this rank holds only a slice of the centres."""
        return self.world_size > 1

    def ddp_ignore(self, prefix: str) -> list[str]:
        """Parameter names (under ``prefix``) DDP must neither broadcast nor average."""
        return [f"{prefix}weight"] if self.sharded else []

    def _rows_per_rank(self) -> list[int]:
        k = self.subcenters
        return [(e - s) * k for s, e in (shard_bounds(self.num_classes, self.world_size, r) for r in range(self.world_size))]

    def gather_rows(self, t: Tensor) -> Tensor:
        """Full ``[C*K, ...]`` tensor from every rank's slice (e.g. the weight or its momentum)."""
        if not self.sharded:
            return t
        return _all_gather_rows(t.detach(), self._rows_per_rank())

    def local_rows(self, t: Tensor) -> Tensor:
        """This rank's slice of a full ``[C*K, ...]`` tensor (a no-op if already that size)."""
        k = self.subcenters
        if t.shape[0] != self.num_classes * k or not self.sharded:
            return t
        return t[self.class_start * k : self.class_end * k].clone()

    def save_optimizer_state(self, checkpoint: dict[str, Any], params: Sequence[nn.Parameter]) -> None:
        """Gather the weight's optimizer state (momentum, Adam moments) into full ``[C*K, D]`` matrices.

        A collective under sharding (every rank saves together, as Lightning does). The weight's
        position among ``params`` is recorded so :meth:`load_optimizer_state` finds it again.
        """
        index = next((i for i, p in enumerate(params) if p is self.weight), None)
        if index is None or not checkpoint.get("optimizer_states"):
            return
        state = optimizer_state_of(checkpoint, index) or {}
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == self.weight.shape:
                state[key] = self.gather_rows(value)
        checkpoint[OPTIMIZER_INDEX_KEY] = index

    def load_optimizer_state(self, checkpoint: dict[str, Any]) -> None:
        """Keep this rank's slice of the full optimizer state matrices (the weight: a load pre-hook)."""
        index = checkpoint.get(OPTIMIZER_INDEX_KEY)
        state = None if index is None else optimizer_state_of(checkpoint, int(index))
        for key, value in (state or {}).items():
            if isinstance(value, Tensor) and value.ndim == 2:
                state[key] = self.local_rows(value)  # type: ignore[index]

    @staticmethod
    def _full_state_hook(module: PartialFC, state: dict[str, Tensor], prefix: str, local_metadata: dict) -> None:
        key = prefix + "weight"
        if key in state and module.sharded:
            state[key] = module.gather_rows(state[key])

    @staticmethod
    def _load_slice_hook(module: PartialFC, state: dict[str, Tensor], prefix: str, *args: object) -> None:
        key = prefix + "weight"
        if key in state:
            state[key] = module.local_rows(state[key])

    # -------------------------------------------------------------- forward
    def rows(self, values: Tensor) -> Tensor:
        """Per-sample ``values`` laid out as the rows of ``forward``'s cosine: every rank's, in rank order."""
        if not self.sharded:
            return values
        return AllGatherRows.apply(values, _gather_sizes(values.shape[0], values.device))

    def _sample(self, labels: Tensor) -> tuple[Tensor | None, Tensor]:
        """Local class indices to use (None = all) and labels remapped to them (-1 if not here)."""
        local = labels - self.class_start
        owned = (labels >= self.class_start) & (labels < self.class_end)
        local = torch.where(owned, local, torch.full_like(local, -1))
        num_local = self.class_end - self.class_start
        # At least one column, so the head never sees an empty cosine matrix on a rank without positives.
        num_sample = max(1, int(self.sample_rate * num_local))
        if self.sample_rate >= 1.0 or num_sample >= num_local:
            return None, local
        positive = torch.unique(local[owned])
        if positive.numel() >= num_sample:
            index = positive
        else:
            # Positives get a score above any random one, so top-k keeps all of them.
            score = torch.rand(num_local, device=labels.device)
            score[positive] = 2.0
            index = score.topk(num_sample).indices.sort().values
        return index, self._remap(labels, index)

    def _remap(self, labels: Tensor, index: Tensor) -> Tensor:
        """Labels as columns of a given sorted local sample ``index`` (-1 where the class is not in it)."""
        local = labels - self.class_start
        owned = (labels >= self.class_start) & (labels < self.class_end)
        pos = torch.searchsorted(index, local.clamp(min=0)).clamp(max=max(index.numel() - 1, 0))
        found = owned & (index.numel() > 0) & (index[pos] == local)
        return torch.where(found, pos, torch.full_like(local, -1))

    def forward(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Scores:
        """Cosine ``[B_global, C'_local*K]`` against the sampled local centres, remapped labels, and
        the global batch's embeddings (all-gathered once, here, for both the cosine and the head).

        ``index`` (sorted local class indices, e.g. another classifier's ``last_index``) reuses a
        given sample instead of drawing one: co-teaching peers share each step's classes.
        """
        if self.sharded:
            self._sizes = _gather_sizes(embeddings.shape[0], embeddings.device)
            embeddings = AllGatherRows.apply(embeddings, self._sizes)
            labels = _all_gather_rows(labels, self._sizes)
        x = F.normalize(embeddings.float(), dim=1)
        if index is None:
            index, target = self._sample(labels)
        else:
            target = self._remap(labels, index)
        self.last_index = index  # co-teaching's second peer reuses it; tests read it
        if index is None:
            return Scores(x @ F.normalize(self.weight.float(), dim=1).t(), target, embeddings)
        k = self.subcenters
        rows = (index[:, None] * k + torch.arange(k, device=index.device)).reshape(-1)
        return Scores(SampledCosine.apply(x, self.weight, rows, self.sparse_grad), target, embeddings)

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample softmax CE (float32) of this rank's own rows; rows with label -1 everywhere get 0."""
        if not self.sharded:
            return LeanCrossEntropy.apply(logits.float(), labels)
        losses = DistCrossEntropy.apply(logits, labels)
        sizes = self._sizes
        if sum(sizes) != labels.shape[0]:
            raise RuntimeError("PartialFC.cross_entropy expects the labels returned by forward on the same batch")
        start = sum(sizes[: self.rank])
        return losses[start : start + sizes[self.rank]]

    def predict(self, cosine: Tensor) -> Tensor:
        """Nearest sampled local centre of each row (compare with the remapped labels)."""
        if self.subcenters > 1:
            cosine = cosine.view(cosine.shape[0], -1, self.subcenters).amax(dim=2)
        return cosine.argmax(dim=1) if cosine.shape[1] else cosine.new_full((cosine.shape[0],), -1, dtype=torch.long)

