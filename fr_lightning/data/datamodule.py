"""FaceDataModule: one training source plus a list of verification sets."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from fr_lightning.batch import FaceBatch
from fr_lightning.data.dual_loaders import DualLoaders
from fr_lightning.data.noise import LabelNoise, NoisyLabelDataset
from fr_lightning.data.pairs import PairImages, PairSet
from fr_lightning.data.sources import SyntheticSource, TrainSource, ValSource, default_val_sets
from fr_lightning.data.sources.base import FaceSet, LoaderSpec, MapSource, Progress


class FaceDataModule(pl.LightningDataModule):
    """Serves a training source and verification sets to the trainer.

    Args:
        train: training source (default: the synthetic renderer).
        val_sets: verification sets evaluated every validation run (default: synth-lfw,
            synth-cfpfp, synth-lowres); an empty list disables validation.
        test_sets: verification sets for ``fr test`` (default: the same as ``val_sets``).
        image_size: square input size in px (112 standard; 56 for small CPU runs).
        batch_size: training batch size per device.
        val_batch_size: evaluation batch size per device.
        num_workers: DataLoader worker processes.
        hflip: random horizontal flip of training images (landmarks follow).
        label_noise: corrupt a fraction of the training labels (noisy-label studies); each
            sample then carries ``labels`` (noisy) and ``clean_labels`` (true, diagnostics only).
        dual_loaders: F²C's identity-based + instance-based sampling (:class:`~fr_lightning.data.DualLoaders`):
            each of ``batch_size`` items is one instance pair plus identity pairs, batched as ``[x; y]``.
        sampler: ``random`` (a seeded shuffle) or ``pk``: identity-balanced batches of
            ``sampler_p`` identities × ``sampler_k`` images (:class:`~fr_lightning.data.pk_sampler.PKSampler`;
            map-style sources; what triplet and centroid-triplet heads want).
        sampler_p: identities per batch with ``sampler=pk`` (None: ``batch_size // sampler_k``).
        sampler_k: images per identity with ``sampler=pk``; ``batch_size`` must be ``P × K``.
    """

    def __init__(
        self,
        train: TrainSource | None = None,
        val_sets: list[ValSource] | None = None,
        test_sets: list[ValSource] | None = None,
        image_size: int = 112,
        batch_size: int = 128,
        val_batch_size: int = 256,
        num_workers: int = 2,
        hflip: bool = True,
        label_noise: LabelNoise | None = None,
        dual_loaders: DualLoaders | None = None,
        sampler: Literal["random", "pk"] = "random",
        sampler_p: int | None = None,
        sampler_k: int = 4,
    ) -> None:
        super().__init__()
        self.train_source = train if train is not None else SyntheticSource()
        self.val_sources = default_val_sets() if val_sets is None else list(val_sets)
        self.test_sources = self.val_sources if test_sets is None else list(test_sets)
        self.image_size = image_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.hflip = hflip
        self.label_noise = label_noise
        self.dual_loaders = dual_loaders
        if sampler not in ("random", "pk"):
            raise ValueError(f"data.init_args.sampler must be 'random' or 'pk', got {sampler!r}")
        self.sampler = sampler
        self.pk: tuple[int, int] | None = None
        if sampler == "pk":
            p = batch_size // sampler_k if sampler_p is None else int(sampler_p)
            if p * sampler_k != batch_size:
                raise ValueError(
                    f"data.init_args.batch_size ({batch_size}) must equal sampler_p × sampler_k "
                    f"({p} × {sampler_k}) with data.init_args.sampler=pk"
                )
            if dual_loaders is not None:
                raise ValueError("data.init_args.sampler=pk and data.init_args.dual_loaders both decide the batches; set one")
            self.pk = (p, int(sampler_k))
        #: The map-style training set (with label noise / dual loaders applied); None for a streaming source.
        self.train_set: FaceSet | None = None
        self.val_pairs: list[PairSet] = []
        self.test_pairs: list[PairSet] = []

    @property
    def num_classes(self) -> int:
        """Identities in the training source (the CLI links this into the model)."""
        return self.train_source.num_classes

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = self._map_style_set()
            if self.train_source.skip_counter is not None:
                self._attach_skip_logger()
        if stage in ("fit", "validate") and not self.val_pairs:
            self.val_pairs = [s.build(self.image_size) for s in self.val_sources]
        if stage == "test" and not self.test_pairs:
            self.test_pairs = [s.build(self.image_size) for s in self.test_sources]

    def _map_style_set(self) -> FaceSet | None:
        """A map-style source's training set with label noise and the dual loaders applied; None for a stream."""
        source = self.train_source
        noise = self.label_noise if self.label_noise is not None and self.label_noise.rate > 0 else None
        if not isinstance(source, MapSource):
            wanted = [key for key, on in (("data.label_noise", noise), ("data.dual_loaders", self.dual_loaders), ("data.sampler=pk", self.pk)) if on is not None]
            if wanted:
                raise ValueError(
                    f"{wanted[0]} needs a map-style training source that lists its labels (SyntheticSource, "
                    f"RecordIOSource, FolderSource); {type(source).__name__} streams its samples"
                )
            return None
        train_set: FaceSet = source.dataset(self.image_size, self.hflip)
        if noise is not None:
            train_set = NoisyLabelDataset(train_set, noise, self.num_classes)
        if self.dual_loaders is not None:
            train_set = self.dual_loaders.wrap(train_set, self._seed())
        return train_set

    @staticmethod
    def _seed() -> int:
        """The run's seed (``seed_everything``), which orders map-style epochs."""
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    @property
    def skipped(self) -> int | None:
        """Corrupt training samples skipped so far (all workers of this rank); None if the source cannot skip."""
        counter = self.train_source.skip_counter
        return None if counter is None else counter.total

    def _attach_skip_logger(self) -> None:
        from fr_lightning.data.health import SkippedSamplesLogger

        trainer = getattr(self, "trainer", None)
        if trainer is not None and not any(isinstance(c, SkippedSamplesLogger) for c in trainer.callbacks):
            trainer.callbacks.append(SkippedSamplesLogger())

    def _loader(self, dataset: Dataset, batch_size: int) -> DataLoader:
        """An evaluation loader (in order, every sample)."""
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> Iterable[FaceBatch]:
        """This rank's training loader, from the source (:meth:`TrainSource.loader`)."""
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (None, None)
        spec = LoaderSpec(
            batch_size=self.batch_size,
            world_size=world,
            rank=rank,
            seed=self._seed(),
            image_size=self.image_size,
            hflip=self.hflip,
            num_workers=self.num_workers,
            progress=self._trainer_progress(),
            pk=self.pk,
        )
        return self.train_source.loader(spec, self.train_set)

    def _trainer_progress(self) -> Progress | None:
        """``() -> (epoch, finished batches of it)`` of the attached trainer (what a checkpoint resumes from)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        return lambda: (trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(PairImages(p), self.val_batch_size) for p in self.val_pairs]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(PairImages(p), self.val_batch_size) for p in self.test_pairs]

    def predict_dataloader(self) -> list[DataLoader]:
        pairs = self.test_pairs or [s.build(self.image_size) for s in self.test_sources]
        return [self._loader(PairImages(p), self.val_batch_size) for p in pairs]

    def pair_sets(self, stage: str) -> list[PairSet]:
        """The pair sets evaluated in ``stage`` (``validate`` or ``test``), in dataloader order."""
        return self.test_pairs if stage == "test" else self.val_pairs
