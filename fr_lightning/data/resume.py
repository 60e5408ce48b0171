"""A training sampler and loader that resume mid-epoch at the exact sample.

:class:`ResumableSampler` is a ``DistributedSampler`` (so Lightning leaves it in place under
DDP) whose epoch order depends only on ``(seed, epoch)``, never on the global RNG.
:class:`ResumableLoader` is a ``DataLoader`` with ``state_dict`` / ``load_state_dict``, which
Lightning stores in the checkpoint's fit-loop state and hands back on resume: the state is the
epoch and the number of batches the trainer finished in it (read from the trainer's progress,
not from the loader, which prefetches ahead), and the restored sampler skips exactly those
samples of that epoch's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ResumableLoader", "ResumableSampler"]


class ResumableSampler(DistributedSampler):
    """Seeded shuffle (``seed + epoch``), split over ranks, that can skip the first samples of an epoch.

    Args:
        dataset: the map-style dataset.
        num_replicas: number of ranks.
        rank: this rank.
        shuffle: shuffle each epoch.
        seed: base seed of the order.
        drop_last: drop the tail so every rank gets the same number of samples.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0, drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self._skip: tuple[int, int] | None = None  # (epoch, samples of this rank to skip)

    def skip(self, epoch: int, samples: int) -> None:
        """On the next pass over ``epoch``, leave out its first ``samples`` (of this rank)."""
        self._skip = (int(epoch), int(samples))

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self._skip is not None and self._skip[0] == self.epoch:
            indices = indices[self._skip[1] :]
            self._skip = None
        return iter(indices)


class ResumableLoader(DataLoader):
    """``DataLoader`` over a :class:`ResumableSampler` whose position survives a checkpoint.

    Args:
        dataset: the dataset.
        batch_size: samples per batch.
        sampler: the resumable sampler.
        progress: returns ``(epoch, finished batches in it)`` of the trainer at save time.
        **kwargs: further ``DataLoader`` arguments.
    """

    def __init__(
        self, dataset: Dataset, batch_size: int, sampler: ResumableSampler, progress: Callable[[], tuple[int, int]] | None = None, **kwargs: Any
    ) -> None:
        # A DataLoader draws its workers' base seed from torch's global RNG each time an epoch's
        # iterator is created, i.e. after an epoch-end checkpoint has recorded that RNG: resumed
        # there, the run would be one draw behind. Its own generator keeps the global RNG out.
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(sampler.seed)))
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.progress() if self.progress is not None else (self.sampler.epoch, 0)
        return {"epoch": int(epoch), "batches": int(batches), "batch_size": int(self.batch_size or 1), "seed": int(self.sampler.seed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.sampler.seed) != self.sampler.seed:
            raise ValueError(f"the checkpoint's data order used seed {state['seed']}, this run uses {self.sampler.seed}")
        self.sampler.skip(state["epoch"], state["batches"] * state.get("batch_size", self.batch_size or 1))
