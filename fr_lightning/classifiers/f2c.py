"""F²C, Faster Face Classification (Wang et al., CVPR 2022, arXiv 2105.10375): a Dynamic Class Pool.

The FC layer is replaced by a pool of ``Q`` identity features written by a **Gallery Net**, an
exponential moving average of the trained backbone (the **Probe Net**). Facts follow the authors'
released code (tiandunx/FFC, ``ffc_ddp.py``); each part is marked:

* [exact] the pool is a *dual queue* ``[2, Q, D]`` initialised with normalised uniform noise; an
  LRU maps identities to slots and each slot alternates the row it is written to
  (:mod:`fr_lightning.classifiers.f2c_pool`);
* [exact] a batch is two halves ``x`` and ``y`` (with the dual loaders: two images of each
  identity plus two halves of random instances, :mod:`fr_lightning.data.dual_loaders`). Pass 1:
  probe ``x`` against the pool with ``gallery(y)`` written in, then everything rolled back.
  Pass 2: probe ``y`` against the pool with ``gallery(x)`` written in, kept;
* [exact] each pass scores two matrices: cosines to queue row 0, and to row 1 at the slots that
  were hits in that pass (row 0 elsewhere);
* [exact] a probe whose identity is in the pool is a positive: margin softmax cross-entropy over
  the ``Q`` slots (the margin is the run's head; the authors' ``AM`` is :class:`~fr_lightning.heads.CosFace`).
  A probe whose identity is not in the pool is a negative: the mean of its ``k`` largest cosines,
  clipped at 0, with ``k = min(max(int(0.0002 Q), 3), 10)``. Per half and matrix the loss is
  ``mean over positives + mean over negatives``; the total is the sum over both halves and
  matrices (``per_sample`` is scaled so the module's mean over the batch equals that sum);
* [exact] before the gallery forward of each step, ``gallery = m * gallery + (1 - m) * probe`` on
  the parameters (``m = 0.99``); the gallery's BatchNorm statistics follow its own train-mode
  forwards of each half separately;
* [reconstruction] duplicate writes to one ``(row, slot)`` in a pass keep the last feature (the
  authors' CUDA index-put leaves the winner unspecified); positives' cosines are clamped by the
  head as for every classifier.

Where things live: the classifier owns the pool (buffers + LRU state in ``_extra_state``) **and
the gallery network**, so the module's state dict and every checkpoint hold both
(``classifier.pool``, ``classifier.gallery.*``), and F²C is one config entry
(configs/scale/f2c.yaml). Two classifier hooks the module calls give it what a classifier does
not otherwise see: :meth:`F2C.bind` (setup: checks the head, creates the gallery as a frozen
copy of the backbone) and :meth:`F2C.prepare_batch` (each training step, after every method's
batch transform: EMA step of the gallery, then its features of both halves of the batch, staged
for ``forward``).

Stacking with the registered methods: lowres, poseface and kd (without its logit term) train
with F²C; kd's logit term is refused by its own ``full_logits`` need; coteaching and gabn are
refused (:attr:`F2C.incompatible_methods`, with the reason).

DDP: the pool is **replicated**. Every rank all-gathers the gallery features and labels and
writes all of them in rank order, so the LRU and the queue stay identical on every rank (as the
authors' ``concat_all_gather``); the probe loss is each rank's own rows and DDP averages the
backbone gradient. The gallery gets no gradient (``requires_grad=False``). The pool is kept out
of DDP's per-step buffer broadcast (:meth:`F2C.ddp_ignore` lists it).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from fr_lightning.batch import FaceBatch
from fr_lightning.classifiers.base import Classifier, Scores
from fr_lightning.classifiers.f2c_pool import ClassPool, PoolPlan
from fr_lightning.classifiers.partial_fc import _all_gather_rows, _gather_sizes
from fr_lightning.heads.base import MarginHead

GALLERY_MISSING = (
    "F2C has no gallery network: FaceRecognitionModule.setup creates it (F2C.bind); "
    "when driving F2C by hand, call classifier.bind(backbone, head) first"
)


def hard_negative_count(capacity: int) -> int:
    """The authors' number of hardest pool cosines a negative is pushed down on [exact]."""
    return min(max(int(capacity * 0.0002), 3), 10, capacity)


class F2C(Classifier):
    """Dynamic Class Pool classifier (F²C); positives: softmax over the pool, negatives: push away.

    ``forward`` returns cosines ``[2B, Q]`` (every row scored against two pool matrices; rows
    ``[:B]`` the first, ``[B:]`` the second) and labels as pool slots (``-1``: identity not in the
    pool); its rows are the embeddings twice (:meth:`rows` lays out other per-sample values alike).
    ``cross_entropy`` turns them into the per-sample loss ``[B]`` of the authors' objective.

    Args:
        embedding_dim: size of the backbone's embedding.
        num_classes: number of identities (linked from the data module by the CLI).
        capacity: pool slots ``Q``; 0 = ``pool_fraction * num_classes`` (at least 1).
        pool_fraction: ``Q`` as a fraction of the identities when ``capacity`` is 0 (the
            authors' README suggests 1 %, 0.1 %, ...).
        momentum: EMA factor ``m`` of the gallery network (authors: 0.99).
        hard_negatives: cosines per negative probe; 0 = the authors' rule from ``Q``.
    """

    #: F²C scores pool slots, no class centre: never "every class" (methods needing full logits refuse it).
    sample_rate: float = 0.0
    incompatible_methods = {
        "coteaching": "co-teaching trains a second classifier and scores each batch twice, but the F2C pool "
        "takes each step's gallery features once and belongs to one network",
        "gabn": "GABN reads one cosine row per sample and re-forwards erased images, but F2C scores every "
        "sample against two pool matrices and updates the pool once per step",
    }

    def __init__(
        self,
        embedding_dim: int = 512,
        num_classes: int = 1000,
        capacity: int = 0,
        pool_fraction: float = 0.01,
        momentum: float = 0.99,
        hard_negatives: int = 0,
    ) -> None:
        super().__init__()
        if capacity < 0 or not 0.0 < pool_fraction <= 1.0:
            raise ValueError(f"F2C: need capacity >= 0 and 0 < pool_fraction <= 1, got {capacity}, {pool_fraction}")
        if not 0.0 <= momentum < 1.0 or hard_negatives < 0:
            raise ValueError(f"F2C: need 0 <= momentum < 1 and hard_negatives >= 0, got {momentum}, {hard_negatives}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.capacity = int(capacity) if capacity > 0 else max(1, round(pool_fraction * num_classes))
        self.momentum = float(momentum)
        self.hard_negatives = int(hard_negatives) or hard_negative_count(self.capacity)
        self.lru = ClassPool(self.capacity)
        self.register_buffer("pool", F.normalize(torch.rand(2, self.capacity, embedding_dim), dim=2))
        self.gallery: nn.Module | None = None
        self._staged: tuple[Tensor, Tensor] | None = None
        self._last: tuple[Tensor, Tensor] | None = None  # cosine and group sizes of the last forward
        self._warned = False

    # -------------------------------------------------------------- gallery
    def bind(self, backbone: nn.Module, head: MarginHead) -> None:
        """Check the head (a softmax margin head, one centre per class) and create the gallery network."""
        if not head.softmax or type(head).loss is not MarginHead.loss:
            raise ValueError(f"F2C needs a softmax margin head; {type(head).__name__} supplies its own per-sample loss")
        if head.subcenters != 1:
            raise ValueError("F2C keeps one pool feature per identity; set the head's subcenters to 1")
        self.attach_gallery(backbone)

    def attach_gallery(self, backbone: nn.Module) -> None:
        """Create the gallery network as a frozen copy of ``backbone`` (idempotent; before loading a checkpoint)."""
        if self.gallery is None:
            gallery = copy.deepcopy(backbone)
            gallery.requires_grad_(False)
            self.gallery = gallery

    def setup(self, world_size: int, rank: int) -> None:
        """Refuse to train without a gallery network (the pool would never be filled)."""
        if self.gallery is None:
            raise ValueError(GALLERY_MISSING)

    @torch.no_grad()
    def update_gallery(self, backbone: nn.Module) -> None:
        """One EMA step of the gallery's parameters towards ``backbone``'s [exact]."""
        if self.gallery is None:
            raise RuntimeError(GALLERY_MISSING)
        for g, p in zip(self.gallery.parameters(), backbone.parameters(), strict=True):
            g.mul_(self.momentum).add_(p.detach().to(g.dtype), alpha=1.0 - self.momentum)

    def prepare_batch(self, batch: FaceBatch, backbone: nn.Module) -> None:
        """Stage this batch's gallery features (:meth:`stage`); the batch itself is unchanged."""
        self.stage(backbone, batch.images, batch.labels)

    def ddp_ignore(self, prefix: str) -> list[str]:
        """The pool: identical on every rank by construction and replaced (not written in place)
        each step, so DDP must not broadcast it (that would send ``2·Q·D`` floats per step)."""
        return [f"{prefix}pool"]

    @torch.no_grad()
    def stage(self, backbone: nn.Module, images: Tensor, labels: Tensor) -> None:
        """EMA step, then the gallery features of both halves of ``images`` for the next ``forward``."""
        self.update_gallery(backbone)
        assert self.gallery is not None
        h = _half(images.shape[0])
        parts = [self.gallery(part) for part in (images[:h], images[h:]) if part.shape[0]]
        self._staged = (F.normalize(torch.cat(parts).to(self.pool.dtype), dim=1), labels.detach())

    # -------------------------------------------------------------- forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Scores:
        """Cosines ``[2B, Q]`` of both halves against both pool matrices, labels as pool slots, rows."""
        if self._staged is None or self._staged[1].shape[0] != labels.shape[0] or not torch.equal(self._staged[1], labels):
            raise RuntimeError(f"F2C.forward: no gallery features staged for this batch. {GALLERY_MISSING}")
        gallery, gallery_labels = self._staged
        commit = self.training and torch.is_grad_enabled()
        if commit:
            self._staged = None  # the pool takes each step's gallery features once
        n, h = labels.shape[0], _half(labels.shape[0])
        probe = F.normalize(embeddings.to(self.pool.dtype), dim=1)  # float32 (float64 in tests)
        g_x, l_x = self._gather(gallery[:h], gallery_labels[:h])
        g_y, l_y = self._gather(gallery[h:], gallery_labels[h:])
        c1x, c2x, tx = self._score(probe[:h], labels[:h], g_y, l_y, commit=False)  # pass 1: rolled back
        c1y, c2y, ty = self._score(probe[h:], labels[h:], g_x, l_x, commit=commit)  # pass 2: kept
        cosine = torch.cat([c1x, c1y, c2x, c2y])
        target = torch.cat([tx, ty, tx, ty])
        self._last = (cosine, torch.tensor([n, h]))
        return Scores(cosine, target, self.rows(embeddings))

    def rows(self, values: Tensor) -> Tensor:
        """Per-sample ``values`` laid out as ``forward``'s rows: the batch twice (one per pool matrix)."""
        return torch.cat([values, values])

    def _gather(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Every rank's gallery features and labels, in rank order (the pool is replicated)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return features, labels
        sizes = _gather_sizes(features.shape[0], features.device)
        return _all_gather_rows(features, sizes), _all_gather_rows(labels, sizes)

    def _score(self, probe: Tensor, labels: Tensor, gallery: Tensor, gallery_labels: Tensor, commit: bool) -> tuple[Tensor, Tensor, Tensor]:
        """One pass: write ``gallery`` into the pool (for real when ``commit``), score ``probe`` twice."""
        if gallery_labels.shape[0] > self.capacity and not self._warned:
            self._warned = True
            rank_zero_warn(
                f"F2C: {gallery_labels.shape[0]} gallery features per pass but only {self.capacity} pool slots; most "
                "probes will find no positive. Raise model.init_args.classifier.init_args.capacity (or pool_fraction)."
            )
        plan = self.lru.plan(gallery_labels.tolist())
        slots, new0, new1 = self._written(plan, gallery)
        target = torch.tensor([plan.view(int(k)) for k in labels.tolist()], dtype=torch.long, device=labels.device)
        # Cosines to the committed row 0, with the written slots' columns replaced (out of place).
        c1 = probe @ self.pool[0].t()
        if slots.numel():
            c1 = c1.index_copy(1, slots, probe @ new0.t())
        c2 = c1
        updated = sorted(plan.updated)
        if updated:
            up = torch.tensor(updated, dtype=torch.long, device=probe.device)
            pos = torch.searchsorted(slots, up)
            c2 = c1.index_copy(1, up, probe @ new1.index_select(0, pos).t())
        if commit:
            # A new tensor, not an in-place write: the matmuls above saved the old pool for backward.
            with torch.no_grad():
                pool = self.pool.clone()
                pool[0].index_copy_(0, slots, new0)
                pool[1].index_copy_(0, slots, new1)
            self.pool = pool
            self.lru.commit(plan)
        return c1, c2, target

    def _written(self, plan: PoolPlan, gallery: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sorted written slots and their rows 0 and 1 after the pass's writes (last write wins)."""
        last: dict[tuple[int, int], int] = {}
        for i, (row, slot) in enumerate(zip(plan.rows, plan.slots)):
            last[(row, slot)] = i
        device = self.pool.device
        slots = torch.tensor(sorted({s for _, s in last}), dtype=torch.long, device=device)
        new0 = self.pool[0].index_select(0, slots)
        new1 = self.pool[1].index_select(0, slots)
        if last:
            keys = list(last)
            src = torch.tensor([last[k] for k in keys], dtype=torch.long, device=device)
            rows = torch.tensor([r for r, _ in keys], dtype=torch.long, device=device)
            pos = torch.searchsorted(slots, torch.tensor([s for _, s in keys], dtype=torch.long, device=device))
            values = gallery.to(device=device, dtype=self.pool.dtype).index_select(0, src)
            for row, buf in ((0, new0), (1, new1)):
                sel = rows == row
                buf.index_copy_(0, pos[sel], values[sel])
        return slots, new0, new1

    # ----------------------------------------------------------------- loss
    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample loss ``[B]``: positives' CE, negatives' hard-negative term, authors' normalisation."""
        if self._last is None or self._last[0].shape != logits.shape:
            raise RuntimeError("F2C.cross_entropy expects the logits of the last forward on the same batch")
        cosine, (n, h) = self._last[0], self._last[1].tolist()
        valid = labels >= 0
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        ce = F.cross_entropy(logits.to(dtype), labels, reduction="none", ignore_index=-1)
        k = min(self.hard_negatives, cosine.shape[1])
        neg = cosine.to(dtype).topk(k, dim=1).values.clamp_min(0.0).sum(dim=1) / k
        term = torch.where(valid, ce, neg)
        term = term[:n] + term[n:]  # both pool matrices of each sample
        positive = valid[:n]
        half = torch.arange(n, device=labels.device) >= h
        # Size of each sample's group (positives or negatives of its half): each group is averaged.
        group = torch.zeros(n, dtype=dtype, device=labels.device)
        for in_half in (~half, half):
            for kind in (positive, ~positive):
                members = in_half & kind
                group[members] = members.sum().to(dtype)
        return term * (n / group.clamp_min(1.0))

    def predict(self, cosine: Tensor) -> Tensor:
        """Nearest pool slot of each row (compare with the slot labels ``forward`` returned)."""
        return cosine.argmax(dim=1)

    # ----------------------------------------------------------- checkpoint
    def get_extra_state(self) -> dict[str, Tensor]:
        """The LRU map and write phases (tensors only, so checkpoints load with ``weights_only=True``)."""
        return self.lru.state()

    def set_extra_state(self, state: Any) -> None:
        """Restore the LRU map and write phases saved by :meth:`get_extra_state`."""
        self.lru.load(state)


def _half(n: int) -> int:
    """Rows in the first half ``x`` of a batch of ``n`` (the larger half when ``n`` is odd)."""
    return n - n // 2


class F2CGallery(Callback):
    """Deprecated and inert: F²C's gallery network now belongs to :class:`F2C` itself.

    Run configs saved before that change list ``fr_lightning.classifiers.F2CGallery`` in
    ``trainer.callbacks``; it still parses, so those runs resume and evaluate, and only warns.
    Drop it from the config.
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        rank_zero_warn(
            "fr_lightning.classifiers.F2CGallery is no longer needed (F2C owns its gallery network); "
            "remove it from trainer.callbacks"
        )
