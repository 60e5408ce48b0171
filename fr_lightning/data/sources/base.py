"""The data-source contract: what the data module asks of a training or verification source.

A training source *has* everything the data module calls; nothing is probed with ``hasattr``:

* :attr:`TrainSource.num_classes` (linked into the classifier) and
  :meth:`TrainSource.loader`, the training loader of one rank (batches of
  :class:`~fr_lightning.batch.FaceBatch`) for a :class:`LoaderSpec`; every source implements it:
  map-style sources through :class:`MapSource`, the WebDataset stream and the DALI pipeline
  each their own;
* capabilities with a documented default: :attr:`TrainSource.skip_counter` (None: the source
  never skips a corrupt sample), and being a :class:`MapSource`, whose :meth:`MapSource.dataset`
  is a :class:`FaceSet` that lists its labels (what ``data.label_noise`` and F²C's
  ``data.dual_loaders`` need; a streaming source is refused with the option named).

Each source is a small class with a typed ``__init__`` so YAML can select it by ``class_path``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fr_lightning.batch import FaceBatch, collate_faces
from fr_lightning.data.pairs import PairSet
from fr_lightning.data.resume import ResumableLoader, ResumableSampler

if TYPE_CHECKING:
    from fr_lightning.data.sources.samples import SkipCounter

__all__ = ["FaceSet", "LoaderSpec", "MapSource", "Progress", "TrainSource", "ValSource", "resolve_ranks"]

#: ``() -> (epoch, batches finished in it)`` of the trainer: what a resumable loader saves.
Progress = Callable[[], tuple[int, int]]


class FaceSet(Dataset):
    """A map-style training set: dict samples by index, the label of every sample, and its batching.

    Subclasses set or compute :attr:`labels` (int64 ``[N]``, sample order) and may override
    :meth:`collate` (F²C's dual-loader items batch as ``[x; y]``).
    """

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def collate(self, samples: Sequence[dict[str, Any]]) -> FaceBatch:
        """A batch of samples as one :class:`FaceBatch` (default: :func:`collate_faces`)."""
        return collate_faces(list(samples))


def resolve_ranks(world_size: int | None, rank: int | None) -> tuple[int, int]:
    """``(world_size, rank)``, each None taken from ``torch.distributed`` when initialised, else ``(1, 0)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        world, me = dist.get_world_size(), dist.get_rank()
    else:
        world, me = 1, 0
    return (world if world_size is None else int(world_size)), (me if rank is None else int(rank))


@dataclass(frozen=True)
class LoaderSpec:
    """What the data module asks a training source for: this rank's batches, and how to make them.

    Attributes:
        batch_size: samples per batch on this rank (full batches only).
        world_size: number of ranks (None: from ``torch.distributed``, else 1).
        rank: this rank (None: from ``torch.distributed``, else 0).
        seed: the run's seed (order and per-sample augmentation keys of a map-style source; a
            source with a ``seed`` option of its own uses that).
        image_size: square output size in px.
        hflip: random horizontal flip (when the source's own ``augment`` is not set).
        num_workers: DataLoader worker processes (a GPU pipeline has its own threads).
        progress: the trainer's ``(epoch, finished batches)``; a resumable loader saves it in
            checkpoints and reads the epoch from it (None outside a trainer).
        pk: ``(P, K)``: identity-balanced batches of P identities × K images
            (:class:`~fr_lightning.data.pk_sampler.PKSampler`; map-style sources only, and
            ``batch_size`` must be ``P·K``); None: a seeded shuffle.
    """

    batch_size: int
    world_size: int | None = None
    rank: int | None = None
    seed: int = 0
    image_size: int = 112
    hflip: bool = True
    num_workers: int = 0
    progress: Progress | None = None
    pk: tuple[int, int] | None = None

    def ranks(self) -> tuple[int, int]:
        """``(world_size, rank)`` with the defaults resolved (:func:`resolve_ranks`)."""
        return resolve_ranks(self.world_size, self.rank)


class TrainSource(ABC):
    """Base of training sources: the number of classes and the training loader of one rank.

    Attributes:
        skip_counter: counter of the corrupt samples skipped (logged as ``data/skipped``). None
            (the default): the source never skips one, a sample that cannot be read stops
            training; a source with ``skip_corrupt`` on sets its own.
    """

    skip_counter: SkipCounter | None = None

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of identities (linked into the classifier)."""

    @abstractmethod
    def loader(self, spec: LoaderSpec, dataset: FaceSet | None = None) -> Iterable[FaceBatch]:
        """The training loader of one rank, as ``spec`` describes.

        Args:
            spec: batch size, ranks, seed, image size, flip, workers and the trainer's progress.
            dataset: a :class:`MapSource`'s set to serve instead of a fresh :meth:`MapSource.dataset`
                (the data module's label-noise or dual-loader view of it); other sources refuse one.
        """

    def _refuse_dataset(self, dataset: FaceSet | None) -> None:
        if dataset is not None:
            raise ValueError(
                f"{type(self).__name__} streams its samples: it cannot serve a map-style set "
                "(data.label_noise and data.dual_loaders need a map-style source: synthetic, RecordIO, folder)"
            )


class MapSource(TrainSource):
    """A training source with a map-style :class:`FaceSet` (indexable, lists its labels).

    Its loader is the seeded, exactly resumable one (:mod:`fr_lightning.data.resume`): the order
    depends only on ``(seed, epoch)`` and a checkpoint stores the position.
    """

    @abstractmethod
    def dataset(self, image_size: int, hflip: bool) -> FaceSet:
        """The training set at ``image_size`` px."""

    def loader(self, spec: LoaderSpec, dataset: FaceSet | None = None) -> ResumableLoader:
        """A :class:`~fr_lightning.data.resume.ResumableLoader` over ``dataset`` (default: :meth:`dataset`)."""
        data = dataset if dataset is not None else self.dataset(spec.image_size, spec.hflip)
        world, rank = spec.ranks()
        sampler: ResumableSampler
        if spec.pk is not None:
            from fr_lightning.data.pk_sampler import PKSampler

            p, k = spec.pk
            if p * k != spec.batch_size:
                raise ValueError(f"data.init_args.batch_size ({spec.batch_size}) must equal sampler_p × sampler_k ({p} × {k}) with sampler=pk")
            if not isinstance(data, FaceSet):
                raise ValueError(f"data.init_args.sampler=pk needs a training set that lists its labels; {type(data).__name__} does not")
            sampler = PKSampler(data, data.labels, p, k, num_replicas=world, rank=rank, seed=spec.seed)
        else:
            sampler = ResumableSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=spec.seed, drop_last=True)
        return ResumableLoader(
            data,
            batch_size=spec.batch_size,
            sampler=sampler,
            progress=spec.progress,
            drop_last=True,
            num_workers=spec.num_workers,
            persistent_workers=spec.num_workers > 0,
            collate_fn=data.collate if isinstance(data, FaceSet) else collate_faces,
        )


class ValSource(ABC):
    """Base of verification sources: builds a :class:`PairSet`."""

    @abstractmethod
    def build(self, image_size: int) -> PairSet:
        """The pair set at ``image_size`` px."""
