"""An identity-balanced P×K sampler for map-style sources, exactly resumable.

Each batch holds ``P`` identities × ``K`` images (what triplet mining and Centroid Triplet Loss
need: every anchor has positives and negatives). The sampler yields sample indices in batch
order, so a plain ``DataLoader`` with ``batch_size = P·K`` and ``drop_last`` cuts exactly these
batches; it is a :class:`~fr_lightning.data.resume.ResumableSampler` (so Lightning leaves it in
place under DDP and :class:`~fr_lightning.data.resume.ResumableLoader` resumes it mid-epoch).

The epoch's global order is a pure function of ``(seed, epoch)`` (never of the global RNG):

* identities with fewer than 2 images are left out (they have no positive);
* an epoch is ``R = max(1, round(N / (I·K)))`` rounds (``N`` samples, ``I`` eligible identities),
  so an epoch shows about ``N`` samples;
* each round draws a permutation of the identities and cuts it into groups of ``P`` (the tail is
  dropped): identities never repeat inside a round; the round keeps a multiple of the world size
  ``W`` of these batches, so the ``W`` batches of one step come from one round;
* identity ``c``'s ``K`` images in round ``r`` are positions ``r·K … r·K+K−1`` (cyclic) of a
  per-(seed, epoch, identity) permutation of its images: an identity with fewer than ``K`` images
  repeats some in a batch.

**DDP rule**: rank ``w`` takes global batches ``w, w+W, w+2W, …``. The ``W`` batches of one step
are cut from one round's permutation, so the ranks' identities at each step are disjoint; every
rank gets the same number of batches (``R · ⌊⌊I/P⌋/W⌋``).

**Resume**: skipping the first ``s`` samples of the global order (what the loader's state asks)
skips ``s / (P·K)`` whole global batches, then re-splits the rest over the ranks, exactly like
:class:`~fr_lightning.data.resume.ResumableSampler`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import numpy as np
import torch
from torch.utils.data import Dataset

from fr_lightning.data.resume import ResumableSampler

__all__ = ["PKSampler"]


class PKSampler(ResumableSampler):
    """P identities × K images per batch, split over ranks, resumable (module docstring).

    Args:
        dataset: the map-style dataset (its length is ``len(labels)``).
        labels: identity of each sample ``[N]``.
        p: identities per batch.
        k: images per identity.
        num_replicas: number of ranks.
        rank: this rank.
        seed: base seed of the order.
    """

    def __init__(self, dataset: Dataset, labels: Sequence[int] | np.ndarray, p: int, k: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        if p < 2 or k < 2:
            raise ValueError(f"P×K sampler: data.init_args.sampler_p ({p}) and sampler_k ({k}) must each be at least 2")
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"P×K sampler: {len(labels)} labels for a dataset of {len(dataset)} samples")  # type: ignore[arg-type]
        self.p, self.k = int(p), int(k)
        order = np.argsort(labels, kind="stable")
        _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        self._members = [order[s : s + c] for s, c in zip(starts, counts) if c >= 2]
        n_ids = len(self._members)
        per_round = (n_ids // self.p) // self.num_replicas
        if per_round == 0:
            raise ValueError(
                f"P×K sampler: {n_ids} identities with at least 2 images cannot fill one batch of "
                f"sampler_p={self.p} identities on each of {self.num_replicas} rank(s)"
            )
        self.rounds = max(1, round(len(labels) / (n_ids * self.k)))
        self.batches_per_rank = self.rounds * per_round
        self.num_samples = self.batches_per_rank * self.p * self.k
        self.total_size = self.num_samples * self.num_replicas

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every rank's batches of ``epoch`` in global order (a pure function of ``(seed, epoch)``)."""
        g = torch.Generator()
        g.manual_seed((int(self.seed) * 1_000_003 + int(epoch)) & ((1 << 63) - 1))
        perms = [m[torch.randperm(len(m), generator=g).numpy()] for m in self._members]
        n_ids, per_round = len(self._members), (len(self._members) // self.p) // self.num_replicas * self.num_replicas
        batches: list[list[int]] = []
        for r in range(self.rounds):
            ids = torch.randperm(n_ids, generator=g).tolist()
            for b in range(per_round):
                batch: list[int] = []
                for c in ids[b * self.p : (b + 1) * self.p]:
                    imgs = perms[c]
                    batch.extend(int(imgs[(r * self.k + j) % len(imgs)]) for j in range(self.k))
                batches.append(batch)
        return batches

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        batches = self.global_batches(self.epoch)
        skip = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            skip, self._skip = self._skip[1], None
        per = self.p * self.k
        if skip % per:
            raise ValueError(f"P×K sampler: cannot resume {skip} samples into an epoch (not a whole number of {per}-sample batches)")
        rest = batches[skip // per :]
        mine = rest[self.rank :: self.num_replicas][: len(rest) // self.num_replicas]
        return iter([i for b in mine for i in b])
