"""WebDataset tar shards as a streaming training source (data that outgrows one disk).

Each DDP rank and DataLoader worker reads its own run of shards (:mod:`.wds_plan`), streams them
through webdataset's tar reader and a seeded shuffle buffer, and decodes only what it yields. An
epoch visits every sample at most once across ranks and every rank runs the same number of steps.

Epoch and resume state live in a small shared-memory tensor, so :meth:`WdsDataset.set_epoch` and
:meth:`WdsDataset.load_state_dict` called in the main process reach persistent DataLoader workers.
Without either call the epoch advances by one on every pass.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.images import decode_image
from fr_lightning.data.formats.wds import ShardIndex, WdsSample, iter_shard, read_shard_index
from fr_lightning.batch import collate_faces
from fr_lightning.data.resume import ResumableStreamLoader, epoch_key_base, index_key, key_uniform
from fr_lightning.data.sources.base import FaceSet, LoaderSpec, TrainSource, resolve_ranks
from fr_lightning.data.sources.samples import SkipCounter
from fr_lightning.data.sources.wds_plan import batches_per_piece, piece_sizes, plan_epoch, resume_point
from fr_lightning.data.transforms import _NORMALISED, Augment, SizeCheck, hflip_landmarks, normalize_image, resize_face

__all__ = ["WdsDataset", "WdsSource"]

log = logging.getLogger(__name__)

# Layout of the shared state tensor.
_EPOCH, _RESUME_BATCHES, _CURRENT, _PASSES = 0, 1, 2, 3
_SLOTS = 64  # pass counters: slot 0 = main process, 1 + w = DataLoader worker w


class WdsDataset(IterableDataset):
    """Iterable training set over WebDataset shards, yielding the same sample dicts as the other sources.

    Args:
        uri: Shard folder holding ``shards.json`` (local path or fsspec URI).
        image_size: Output side in px (images of another size are resized).
        augment: Augmentation (default: horizontal flip).
        seed: Seeds the shard order and the shuffle buffer.
        shuffle: Shuffle shard order and samples each epoch (off: file order, no buffer).
        shuffle_buffer: Samples (still encoded) held by each worker's shuffle buffer.
        skip_corrupt: Replace an unreadable sample by the worker's previous good one (counted in
            ``skipped``, logged as ``data/skipped``) instead of raising; the count of samples per
            rank, and so the step count, stays the same.
        rank: This process's rank (default: from ``torch.distributed``, else 0).
        world_size: Number of ranks (default: from ``torch.distributed``, else 1).
        skip_counter: Where replaced samples are counted (default: a counter of its own).
    """

    def __init__(
        self,
        uri: str,
        image_size: int = 112,
        augment: Augment | None = None,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 2000,
        skip_corrupt: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        skip_counter: SkipCounter | None = None,
    ) -> None:
        self.uri = str(uri)
        self.index: ShardIndex = read_shard_index(self.uri)
        self.image_size = image_size
        self.size_check = SizeCheck(image_size, "the training shards")  # one warning per set, naming a sample
        self.augment = augment if augment is not None else Augment(hflip=True)
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.skip_corrupt = skip_corrupt
        self.world_size, self.rank = resolve_ranks(world_size, rank)
        self.batch_size: int | None = None
        self.num_workers = 0
        self.drop_last = True
        self.skip_counter = skip_counter if skip_counter is not None else SkipCounter()
        self._state = torch.full((_PASSES + _SLOTS,), 0, dtype=torch.int64).share_memory_()
        self._state[_CURRENT] = -1
        self._starts = self.index.starts
        self._key_base, self._key_epoch = 0, None  # per-sample augmentation keys of the epoch being read

    # -- configuration -------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    @property
    def skipped(self) -> int:
        """Unreadable samples replaced so far (all processes of this rank)."""
        return self.skip_counter.total

    def bind_loader(self, batch_size: int, num_workers: int, drop_last: bool = True) -> None:
        """Tell the dataset how its DataLoader batches it (exact ``len`` and mid-epoch resume need it)."""
        self.batch_size, self.num_workers, self.drop_last = int(batch_size), int(num_workers), drop_last

    def _pieces(self, workers: int) -> list[int]:
        return piece_sizes(self.index.num_samples, self.world_size, workers)

    def __len__(self) -> int:
        """Samples this rank yields per epoch (a multiple of the batch size once :meth:`bind_loader` ran)."""
        if self.batch_size is None:
            return self.index.num_samples // self.world_size
        batches = batches_per_piece(self._pieces(max(1, self.num_workers)), self.batch_size, self.drop_last)
        return sum(batches) * self.batch_size

    # -- epoch and resume state ------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass (in every worker) read epoch ``epoch`` from its start."""
        self._state[_EPOCH] = int(epoch)
        self._state[_RESUME_BATCHES] = 0
        self._state[_PASSES:] = 0

    def start_epoch(self, epoch: int) -> None:
        """Make the next pass read ``epoch``: the rest of it when a resume position for that epoch
        is pending (:meth:`load_state_dict`), else from its start."""
        pending = int(self._state[_RESUME_BATCHES]) > 0 and int(self._state[_EPOCH]) == int(epoch)
        if not (pending and int(self._state[_PASSES:].sum()) == 0):
            self.set_epoch(epoch)

    @property
    def current_epoch(self) -> int:
        """The epoch being read (or, before the first pass, the one the next pass reads)."""
        current = int(self._state[_CURRENT])
        return current if current >= 0 else int(self._state[_EPOCH])

    def state_dict(self, batches_done: int = 0) -> dict[str, int]:
        """Resume position: the current epoch and the batches this rank consumed of it.

        Args:
            batches_done: Training batches of the current epoch already consumed on this rank
                (the trainer knows this; the dataset's workers run ahead of it).
        """
        return {
            "epoch": self.current_epoch,
            "batches_done": int(batches_done),
            "batch_size": int(self.batch_size or 0),
            "num_workers": self.num_workers,
            "world_size": self.world_size,
            "seed": self.seed,
            "num_samples": self.index.num_samples,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state_dict`'s position: the next pass reads the rest of that epoch.

        Raises:
            ValueError: The data, seed, world size, batch size or worker count differ from the
                saved run, so the same position cannot be found (the message names the field).
        """
        batches = int(state.get("batches_done", 0))
        checks = {"seed": self.seed, "num_samples": self.index.num_samples, "world_size": self.world_size}
        if batches:
            checks.update(batch_size=int(self.batch_size or 0), num_workers=self.num_workers)
        for key, now in checks.items():
            if key in state and int(state[key]) != now:
                raise ValueError(
                    f"cannot resume {self.uri} mid-epoch: {key} was {state[key]} in the saved run, now {now}"
                )
        if batches:
            total = sum(batches_per_piece(self._pieces(max(1, self.num_workers)), int(state["batch_size"]), self.drop_last))
            if batches > total:
                raise ValueError(f"cannot resume {self.uri}: batches_done={batches} but an epoch has {total} batches")
        self.set_epoch(int(state["epoch"]))
        self._state[_RESUME_BATCHES] = batches

    # -- reading ---------------------------------------------------------------------------

    def _begin_pass(self) -> tuple[int, int, int, int]:
        """``(epoch, worker role, workers, samples to skip)`` for the pass starting in this process."""
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        slot = _PASSES + (0 if info is None else 1 + worker % (_SLOTS - 1))
        passes = int(self._state[slot])
        self._state[slot] = passes + 1
        epoch = int(self._state[_EPOCH]) + passes
        self._state[_CURRENT] = epoch
        done_batches = int(self._state[_RESUME_BATCHES]) if passes == 0 else 0
        if done_batches == 0:
            return epoch, worker, workers, 0
        if self.batch_size is None:
            raise ValueError(f"{self.uri}: resuming mid-epoch needs bind_loader(batch_size, num_workers) first")
        batches = batches_per_piece(self._pieces(workers), self.batch_size, self.drop_last)
        first, done = resume_point(batches, done_batches)
        role = (first + worker) % workers
        return epoch, role, workers, done[role] * self.batch_size

    def _raw(self, epoch: int, role: int, workers: int) -> Iterator[tuple[int, WdsSample | DataFormatError]]:
        """``(global sample id, sample or error)`` of this worker's piece, in file order."""
        plan = plan_epoch(self.index.sizes, epoch, self.seed, self.rank, self.world_size, role, workers, self.shuffle)
        for shard, start, stop in plan:
            base = int(self._starts[shard])
            for k, item in enumerate(iter_shard(self.index, shard, start, stop, tolerant=self.skip_corrupt)):
                yield base + start + k, item

    def _shuffled(self, epoch: int, role: int, workers: int) -> Iterator[tuple[int, WdsSample | DataFormatError]]:
        items = self._raw(epoch, role, workers)
        if not self.shuffle:
            return items
        import webdataset

        seed = int(np.random.SeedSequence([self.seed, epoch, self.rank, role]).generate_state(1)[0])
        stage = webdataset.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=random.Random(seed))
        return stage(items)

    def decode(self, sample: WdsSample, global_id: int, epoch: int = 0) -> dict[str, Any]:
        """Decode, resize, augment and normalise one raw sample into a sample dict.

        Its augmentation is a function of (seed, epoch, global sample id), whichever worker reads
        it. With a flip-only augmentation the image goes from OpenCV's BGR decode to the
        normalised ``[3, S, S]`` tensor in one table lookup and one strided copy (channel order
        and flip folded into the copy), bit-identical to the general path.
        """
        if self._key_epoch != epoch:
            self._key_base, self._key_epoch = epoch_key_base(self.seed, epoch), epoch
        key = index_key(self._key_base, global_id)
        augment = self.augment
        if augment.uses_albumentations:
            where = f"{sample.url}: sample {sample.key!r}"
            image, lm = resize_face(decode_image(sample.image, where), sample.landmarks, self.image_size, self.size_check, where)
            aug = augment(image, lm, key=key)
            images, lm = normalize_image(aug.image), aug.landmarks
        else:
            try:
                bgr = cv2.imdecode(np.frombuffer(sample.image, np.uint8), cv2.IMREAD_COLOR) if sample.image else None
            except cv2.error:
                bgr = None
            if bgr is None:
                decode_image(sample.image, f"{sample.url}: sample {sample.key!r}")  # raises, naming shard and key
            bgr, lm = resize_face(bgr, sample.landmarks, self.image_size, self.size_check, f"{sample.url}: sample {sample.key!r}")
            flipped = augment.hflip and key_uniform(key) < 0.5
            table = cv2.LUT(bgr, _NORMALISED)  # [S, S, 3] float32, BGR
            view = table[:, ::-1, ::-1] if flipped else table[:, :, ::-1]
            images = torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1)))
            if flipped and lm is not None:
                lm = hflip_landmarks(lm, bgr.shape[1])
        out: dict[str, Any] = {"images": images, "labels": sample.label}
        if lm is not None:
            out["landmarks"] = np.asarray(lm, np.float32)
        if sample.group is not None:
            out["group"] = sample.group
        out["index"] = global_id
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, role, workers, skip = self._begin_pass()
        pending = 0  # unreadable samples waiting for a good one to stand in for them
        last: dict[str, Any] | None = None
        for k, (global_id, item) in enumerate(self._shuffled(epoch, role, workers)):
            if k < skip:
                continue
            if isinstance(item, WdsSample) and not 0 <= item.label < self.index.num_classes:
                # A label outside [0, num_classes) means the data or the index is wrong: never skipped.
                raise DataFormatError(
                    f"{item.url}: sample {item.key!r} has label {item.label}, outside "
                    f"[0, {self.index.num_classes}) (num_classes from shards.json)"
                )
            try:
                if isinstance(item, DataFormatError):
                    raise item
                out = self.decode(item, global_id, epoch)
            except DataFormatError as exc:
                if not self.skip_corrupt:
                    raise
                self.skip_counter.add()
                log.warning("skipping unreadable sample: %s", exc)
                if last is None:
                    pending += 1
                else:
                    yield last
                continue
            for _ in range(pending + 1):
                yield out
            pending, last = 0, out
        if pending:
            raise DataFormatError(f"{self.uri}: no readable sample in this worker's share ({pending} failed)")


class WdsSource(TrainSource):
    """WebDataset tar shards (``fr data convert SRC OUT --to wds``), streamed shard by shard.

    Args:
        uri: Shard folder holding ``shards.json``: local path or fsspec URI
            (``s3://bucket/webface42m``; install that store's fsspec backend, e.g. ``s3fs``).
        seed: Seeds the per-epoch shard order and the shuffle buffer.
        shuffle: Shuffle shards and samples every epoch.
        shuffle_buffer: Samples held (encoded) in each DataLoader worker's shuffle buffer.
        skip_corrupt: Replace unreadable samples by the previous good one (counted, logged as
            ``data/skipped``) instead of stopping.
        augment: Training augmentation (default: horizontal flip as the data module's ``hflip``).
    """

    def __init__(
        self,
        uri: str = "data/shards",
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 2000,
        skip_corrupt: bool = False,
        augment: Augment | None = None,
    ) -> None:
        self.uri = str(uri)
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.skip_corrupt = skip_corrupt
        self.augment = augment
        self._index: ShardIndex | None = None
        self.skip_counter = SkipCounter() if skip_corrupt else None
        self._stream: tuple[tuple[int, bool, int, int], WdsDataset] | None = None

    @property
    def index(self) -> ShardIndex:
        """The shard index (read once)."""
        if self._index is None:
            self._index = read_shard_index(self.uri)
        return self._index

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def dataset(self, image_size: int, hflip: bool, world_size: int | None = None, rank: int | None = None) -> WdsDataset:
        """A new stream over the shards for ``rank`` of ``world_size`` (default: from ``torch.distributed``)."""
        augment = self.augment if self.augment is not None else Augment(hflip=hflip)
        return WdsDataset(
            self.uri,
            image_size,
            augment,
            seed=self.seed,
            shuffle=self.shuffle,
            shuffle_buffer=self.shuffle_buffer,
            skip_corrupt=self.skip_corrupt,
            rank=rank,
            world_size=world_size,
            skip_counter=self.skip_counter,
        )

    def loader(self, spec: LoaderSpec, dataset: FaceSet | None = None) -> ResumableStreamLoader:
        """A :class:`~fr_lightning.data.resume.ResumableStreamLoader`: the epoch follows ``progress``
        and checkpoints hold the stream's position. Order and shuffle use this source's ``seed``.

        The stream is built once per (size, flip, ranks) and reused by later loaders, so its
        epoch and resume state carry over (a second loader outside a trainer reads the next epoch).
        """
        self._refuse_dataset(dataset)
        world, rank = spec.ranks()
        key = (spec.image_size, spec.hflip, world, rank)
        if self._stream is None or self._stream[0] != key:
            self._stream = (key, self.dataset(spec.image_size, spec.hflip, world, rank))
        stream = self._stream[1]
        stream.bind_loader(spec.batch_size, spec.num_workers, drop_last=True)  # its epoch length follows the batching
        return ResumableStreamLoader(
            stream,
            batch_size=spec.batch_size,
            progress=spec.progress,
            seed=self.seed,
            drop_last=True,
            num_workers=spec.num_workers,
            persistent_workers=spec.num_workers > 0,
            collate_fn=collate_faces,
        )
