"""A training sampler and loaders that resume mid-epoch at the exact sample, and per-sample random keys.

:class:`ResumableSampler` is a ``DistributedSampler`` (so Lightning leaves it in place under
DDP) whose epoch order depends only on ``(seed, epoch)``, never on the global RNG.
:class:`ResumableLoader` is a ``DataLoader`` with ``state_dict`` / ``load_state_dict``, which
Lightning stores in the checkpoint's fit-loop state and hands back on resume: the state is the
epoch and the number of batches the trainer finished in it (read from the trainer's progress,
not from the loader, which prefetches ahead), and the restored sampler skips exactly those
samples of that epoch's order. :class:`ResumableStreamLoader` does the same for a streaming
dataset with its own ``state_dict(batches_done)`` (:class:`~fr_lightning.data.sources.wds.WdsDataset`).

Random augmentation never draws from a process's global RNG: each sample's randomness comes from
:func:`sample_keys`, a pure function of ``(seed, epoch, sample index)``, so it does not depend on
the worker count, the prefetch depth or where a run resumed. Map-style batches are fetched inside
:func:`forked_rngs` (:class:`SeededFetch`): torch, NumPy and Python ``random`` are seeded from the
batch's first key for the fetch and restored after it, so a dataset that does use the global RNGs
is reproducible too, and fetching never moves the trainer's RNG streams.

Both loaders create their real iterator at the first ``next()``, not at ``iter()``
(:class:`DeferredIterator`). Lightning builds the training iterator before a checkpoint's state
is restored (``configure_optimizers`` asks for ``estimated_stepping_batches``) and reuses it for
the resumed epoch; with worker processes, a DataLoader's iterator hands the workers their first
``prefetch_factor x num_workers`` batches of sample indices as soon as it exists, which would fix
the epoch's order, position and augmentation keys before the resume position and the epoch are
known (measured: a 2-worker run resumed in epoch 1 replayed epoch 0's order and flips).
"""

from __future__ import annotations

import contextlib
import contextvars
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = [
    "DeferredIterator",
    "ResumableLoader",
    "ResumableSampler",
    "ResumableStreamLoader",
    "SampleSeeds",
    "SeededFetch",
    "epoch_key_base",
    "forked_rngs",
    "index_key",
    "key_uniform",
    "sample_keys",
]

_M64 = (1 << 64) - 1
#: (seed, epoch) of the batch being fetched, set by :class:`SeededFetch` (default: (0, 0)).
_FETCH: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar("fr_fetch_seed", default=(0, 0))


def _mix(x: Any) -> Any:
    """splitmix64's finaliser (a bijection that scatters every input bit) on a Python int in
    ``[0, 2**64)`` or, element-wise, on a uint64 array (wrapping arithmetic gives the same bits)."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _M64
    return x ^ (x >> 31)


def epoch_key_base(seed: int, epoch: int) -> int:
    """The per-(seed, epoch) part of every sample key, for :func:`index_key`."""
    return _mix(_mix((int(seed) & _M64) ^ 0xFACE5EED) ^ (int(epoch) & _M64))


def index_key(base: int, index: int) -> int:
    """The 64-bit key of sample ``index`` given ``base = epoch_key_base(seed, epoch)`` (the one
    definition of a key: :func:`sample_keys` and the streaming source both use it)."""
    return _mix(base ^ ((index & _M64) * 0x9E3779B97F4A7C15 & _M64))


def sample_keys(indices: Any, seed: int | None = None, epoch: int | None = None) -> np.ndarray:
    """64-bit random keys ``[N]`` (uint64), a pure function of ``(seed, epoch, index)`` per sample.

    ``seed`` and ``epoch`` default to those of the batch :class:`SeededFetch` is fetching
    (``(0, 0)`` outside a training loader). Key ``i`` is ``index_key(epoch_key_base(seed, epoch),
    indices[i])``, computed on Python ints (a batch's few hundred keys cost well under a millisecond).
    """
    if seed is None or epoch is None:
        s, e = _FETCH.get()
        seed, epoch = (s if seed is None else seed), (e if epoch is None else epoch)
    base = epoch_key_base(seed, epoch)
    return np.array([index_key(base, i) for i in np.asarray(indices, dtype=np.int64).tolist()], dtype=np.uint64)


def key_uniform(keys: Any, stream: int = 0) -> Any:
    """Uniform floats in ``[0, 1)`` derived from :func:`sample_keys` (independent per ``stream``):
    an array for an array of keys, a float for one int key."""
    salt = (0xA5A5 + int(stream)) * 0x9E3779B97F4A7C15 & _M64
    if isinstance(keys, (int, np.integer)):
        return (_mix((int(keys) & _M64) ^ salt) >> 11) * (1.0 / (1 << 53))
    bits = _mix(np.asarray(keys, dtype=np.uint64) ^ np.uint64(salt))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@contextlib.contextmanager
def forked_rngs(seed: int) -> Iterator[None]:
    """Seed torch (CPU), NumPy and Python ``random`` with ``seed`` inside the block; restore them after."""
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.random.default_generator.manual_seed(int(seed) & ((1 << 63) - 1))
    np.random.seed(int(seed) & 0xFFFFFFFF)
    random.seed(int(seed))
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


class SampleSeeds:
    """The ``(seed, epoch)`` of a training loader's per-sample keys, in shared memory so the main
    process's ``set_epoch`` reaches persistent DataLoader workers."""

    def __init__(self, seed: int = 0) -> None:
        self.state = torch.tensor([int(seed), 0], dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.state[1] = int(epoch)

    @property
    def value(self) -> tuple[int, int]:
        seed, epoch = self.state.tolist()
        return int(seed), int(epoch)


class SeededFetch(Dataset):
    """A map-style dataset whose batches are fetched with the loader's ``(seed, epoch)`` active.

    Inside a fetch, :func:`sample_keys` uses that seed and epoch, and the global RNGs are seeded
    from the batch's first key (:func:`forked_rngs`) and restored afterwards. Other attributes
    are those of the wrapped dataset.

    Args:
        dataset: the map-style training dataset.
        seeds: the loader's seed and current epoch.
    """

    def __init__(self, dataset: Dataset, seeds: SampleSeeds) -> None:
        self.inner = dataset
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "inner" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getitems__(self, indices: list[int]) -> list[Any]:
        seed, epoch = self.seeds.value
        first = int(sample_keys(indices[:1], seed, epoch)[0]) if len(indices) else 0
        token = _FETCH.set((seed, epoch))
        try:
            with forked_rngs(first):
                fetch = getattr(self.inner, "__getitems__", None)
                return fetch(list(indices)) if fetch is not None else [self.inner[i] for i in indices]
        finally:
            _FETCH.reset(token)

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]


class DeferredIterator(Iterator[Any]):
    """An iterator that calls ``start()`` to create the real one at its first ``next()``.

    Args:
        start: creates the underlying iterator (a ``DataLoader``'s ``__iter__``).
    """

    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start: Callable[[], Iterator[Any]] | None = start
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> "DeferredIterator":
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            assert self._start is not None
            self._iterator, self._start = self._start(), None
        return next(self._iterator)


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
        self._skip: tuple[int, int] | None = None  # (epoch, samples of the epoch's global order to skip)
        self.seeds: SampleSeeds | None = None

    def skip(self, epoch: int, samples: int) -> None:
        """On the next pass over ``epoch``, leave out the first ``samples`` of its global order
        (all ranks together); the rest is split over this run's ranks."""
        self._skip = (int(epoch), int(samples))

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.seeds is not None:
            self.seeds.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        if self._skip is None or self._skip[0] != self.epoch:
            return super().__iter__()
        skip, self._skip = self._skip[1], None
        # DistributedSampler gives rank r positions r, r+W, ... of the global order, so the first
        # k samples of every rank are the first k·W of that order: skipping globally and
        # re-splitting equals skipping per rank when W is unchanged, and stays at-most-once when
        # a run resumes on another world size.
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]
        else:
            order = list(range(len(self.dataset)))  # type: ignore[arg-type]
        rest = order[skip : self.total_size]
        mine = rest[self.rank :: self.num_replicas]
        return iter(mine[: len(rest) // self.num_replicas])


class ResumableLoader(DataLoader):
    """``DataLoader`` over a :class:`ResumableSampler` whose position survives a checkpoint.

    The dataset is wrapped in :class:`SeededFetch`, so per-sample augmentation keys follow
    ``(sampler seed, epoch, index)``.

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
        if not isinstance(dataset, SeededFetch):
            dataset = SeededFetch(dataset, SampleSeeds(int(sampler.seed)))
        sampler.seeds = dataset.seeds
        dataset.seeds.set_epoch(sampler.epoch)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.progress = progress

    def __iter__(self) -> Iterator[Any]:
        # Deferred: the sampler's order is drawn after the resume position and epoch are set.
        return DeferredIterator(super().__iter__)

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.progress() if self.progress is not None else (self.sampler.epoch, 0)
        return {
            "epoch": int(epoch), "batches": int(batches), "batch_size": int(self.batch_size or 1),
            "seed": int(self.sampler.seed), "world_size": int(self.sampler.num_replicas),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.sampler.seed) != self.sampler.seed:
            raise ValueError(f"the checkpoint's data order used seed {state['seed']}, this run uses {self.sampler.seed}")
        per_step = state.get("batch_size", self.batch_size or 1) * state.get("world_size", self.sampler.num_replicas)
        self.sampler.skip(state["epoch"], state["batches"] * per_step)


class ResumableStreamLoader(DataLoader):
    """``DataLoader`` over a streaming dataset with ``state_dict(batches_done)`` / ``load_state_dict``
    / ``start_epoch`` (:class:`~fr_lightning.data.sources.wds.WdsDataset`), stored in checkpoints.

    Every pass reads the trainer's current epoch (or the rest of it after a resume); the position
    saved is the trainer's (epoch, finished batches), not the prefetching workers'.

    Args:
        dataset: the streaming dataset.
        batch_size: samples per batch.
        progress: returns ``(epoch, finished batches in it)`` of the trainer.
        seed: seeds the loader's own generator (workers' base seed), keeping the global RNG out.
        **kwargs: further ``DataLoader`` arguments.
    """

    def __init__(self, dataset: Any, batch_size: int, progress: Callable[[], tuple[int, int]] | None = None, seed: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
        super().__init__(dataset, batch_size=batch_size, **kwargs)
        self.progress = progress

    def __iter__(self) -> Iterator[Any]:
        return DeferredIterator(self._start)

    def _start(self) -> Iterator[Any]:
        # At the first batch, when the trainer's epoch and a restored position are final.
        if self.progress is not None:
            self.dataset.start_epoch(self.progress()[0])
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        epoch, batches = self.progress() if self.progress is not None else (self.dataset.current_epoch, 0)
        state = dict(self.dataset.state_dict(batches_done=int(batches)))
        state["epoch"] = int(epoch)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
