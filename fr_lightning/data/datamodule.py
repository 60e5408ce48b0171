"""FaceDataModule: one training source plus a list of verification sets."""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset, IterableDataset

from fr_lightning.batch import collate_faces
from fr_lightning.data.dual_loaders import DualLoaders
from fr_lightning.data.noise import LabelNoise, NoisyLabelDataset
from fr_lightning.data.pairs import PairImages, PairSet
from fr_lightning.data.sources import SyntheticSource, TrainSource, ValSource, default_val_sets


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
        dual_loaders: F²C's identity-based + instance-based sampling (``fr_lightning.data.dual_loaders.DualLoaders``):
            each of ``batch_size`` items is one instance pair plus identity pairs, batched as ``[x; y]``.
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
        self.train_set: Dataset | None = None
        self.val_pairs: list[PairSet] = []
        self.test_pairs: list[PairSet] = []

    @property
    def num_classes(self) -> int:
        """Identities in the training source (the CLI links this into the model)."""
        return self.train_source.num_classes

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            train_set = None if hasattr(self.train_source, "loader") else self.train_source.dataset(self.image_size, self.hflip)
            self.skip_counter = getattr(train_set, "skip_counter", None)
            if getattr(self.train_source, "skip_corrupt", False):
                self._attach_skip_logger()
            if self.label_noise is not None and self.label_noise.rate > 0:
                if train_set is None or isinstance(train_set, IterableDataset):
                    raise ValueError("data.label_noise needs a map-style training source (not a streaming one)")
                train_set = NoisyLabelDataset(train_set, self.label_noise, self.num_classes)
            if self.dual_loaders is not None:
                import os

                train_set = self.dual_loaders.wrap(train_set, int(os.environ.get("PL_GLOBAL_SEED", 0)))
            self.train_set = train_set
        if stage in ("fit", "validate") and not self.val_pairs:
            self.val_pairs = [s.build(self.image_size) for s in self.val_sources]
        if stage == "test" and not self.test_pairs:
            self.test_pairs = [s.build(self.image_size) for s in self.test_sources]

    @property
    def skipped(self) -> int | None:
        """Corrupt training samples skipped so far (all workers of this rank); None if the source cannot skip."""
        counter = getattr(self, "skip_counter", None)
        return None if counter is None else counter.total

    def _attach_skip_logger(self) -> None:
        from fr_lightning.data.health import SkippedSamplesLogger

        trainer = getattr(self, "trainer", None)
        if trainer is not None and not any(isinstance(c, SkippedSamplesLogger) for c in trainer.callbacks):
            trainer.callbacks.append(SkippedSamplesLogger())

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, collate=None) -> DataLoader:
        # Streaming (iterable) datasets shuffle and split across ranks/workers themselves.
        iterable = isinstance(dataset, IterableDataset)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=None if iterable else shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        if hasattr(self.train_source, "loader"):  # a GPU pipeline (DaliSource) batches by itself
            return self.train_source.loader(self.image_size, self.hflip, self.batch_size, self.num_workers)
        assert self.train_set is not None, "setup('fit') builds the training set"
        if hasattr(self.train_set, "bind_loader"):  # streaming sets size their epoch by the batching
            self.train_set.bind_loader(self.batch_size, self.num_workers, drop_last=True)
        if hasattr(self.train_set, "start_epoch"):  # a resumable stream (WdsDataset)
            return self._resumable_stream_loader(self.train_set)
        if isinstance(self.train_set, IterableDataset):
            return self._loader(self.train_set, self.batch_size, shuffle=True, collate=collate_faces)
        return self._resumable_loader(self.train_set)

    def _trainer_progress(self):  # noqa: ANN202 - a callable, or None outside a trainer
        """``() -> (epoch, finished batches of it)`` of the attached trainer (what a checkpoint resumes from)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        return lambda: (trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def _resumable_stream_loader(self, dataset: IterableDataset) -> DataLoader:
        """Streaming training loader whose epoch follows the trainer and whose position is saved in
        checkpoints (the dataset's own ``state_dict``; see ``data/resume.py``)."""
        from fr_lightning.data.resume import ResumableStreamLoader

        return ResumableStreamLoader(
            dataset,
            batch_size=self.batch_size,
            progress=self._trainer_progress(),
            seed=getattr(dataset, "seed", 0),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_faces,
        )

    def _resumable_loader(self, dataset: Dataset) -> DataLoader:
        """Map-style training loader whose order depends only on (seed, epoch) and whose position
        is saved in checkpoints, so a resumed run continues at the exact sample (see ``data/resume.py``)."""
        import os

        from fr_lightning.data.resume import ResumableLoader, ResumableSampler

        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)

        def progress() -> tuple[int, int]:
            loop = trainer.fit_loop  # type: ignore[union-attr]
            return trainer.current_epoch, loop.epoch_loop.batch_progress.current.processed  # type: ignore[union-attr]

        return ResumableLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            progress=progress if trainer is not None else None,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=getattr(dataset, "collate", collate_faces),
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(PairImages(p), self.val_batch_size, shuffle=False) for p in self.val_pairs]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(PairImages(p), self.val_batch_size, shuffle=False) for p in self.test_pairs]

    def predict_dataloader(self) -> list[DataLoader]:
        pairs = self.test_pairs or [s.build(self.image_size) for s in self.test_sources]
        return [self._loader(PairImages(p), self.val_batch_size, shuffle=False) for p in pairs]

    def pair_sets(self, stage: str) -> list[PairSet]:
        """The pair sets evaluated in ``stage`` (``validate`` or ``test``), in dataloader order."""
        return self.test_pairs if stage == "test" else self.val_pairs
