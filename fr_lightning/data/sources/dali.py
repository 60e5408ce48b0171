"""NVIDIA DALI input pipeline on the GPU: RecordIO or WebDataset shards, GPU JPEG decode, flip, normalise.

Optional and **untested in this repository**: CPU installs and CI never install DALI, and no test
runs this module (it needs a CUDA GPU and ``nvidia-dali``). The pipeline is written against DALI's
documented operators (``fn.readers.mxnet``, ``fn.readers.webdataset``, ``fn.decoders.image`` with
``device="mixed"``, ``fn.resize``, ``fn.crop_mirror_normalize``) and sharded by rank
(``shard_id = rank``, ``num_shards = world_size``). Use the CPU sources (``RecordIOSource``,
``WdsSource``) wherever exact behaviour matters; they are the tested path.

Install: ``pip install --extra-index-url https://pypi.nvidia.com nvidia-dali-cuda120`` (pick the
package matching your CUDA major version).

Differences from the CPU sources: images arrive on the GPU already normalised, no side files
(landmarks, group), no ``skip_corrupt`` (DALI stops on a bad JPEG), and the epoch order is DALI's
own shuffle (``random_shuffle`` with an ``initial_fill`` buffer), not the CPU sources' plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from fr_lightning.batch import FaceBatch
from fr_lightning.data.formats.recordio_set import RecordIOSet
from fr_lightning.data.formats.wds import read_shard_index
from fr_lightning.data.sources.base import FaceSet, LoaderSpec, TrainSource

__all__ = ["DaliSource", "INSTALL_HINT"]

INSTALL_HINT = (
    "DaliSource needs NVIDIA DALI and a CUDA GPU: pip install --extra-index-url "
    "https://pypi.nvidia.com nvidia-dali-cuda120 (match your CUDA major version), or use "
    "fr_lightning.data.RecordIOSource / fr_lightning.data.WdsSource on CPU"
)


def _import_dali() -> Any:
    try:
        import nvidia.dali as dali  # noqa: F401
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None
    return dali


def _labels_from_ascii(raw: torch.Tensor) -> torch.Tensor:
    """Decimal ASCII ``.cls`` bytes, zero-padded to ``[B, L]`` uint8, to int64 labels ``[B]``."""
    raw = raw.to(torch.int64)
    digits = (raw >= 48) & (raw <= 57)
    value = torch.zeros(raw.shape[0], dtype=torch.int64, device=raw.device)
    for j in range(raw.shape[1]):
        d = digits[:, j]
        value = torch.where(d, value * 10 + (raw[:, j] - 48), value)
    return value


class _DaliBatches:
    """Iterable over a DALI pipeline yielding :class:`FaceBatch` (images already on the GPU)."""

    def __init__(self, pipe: Any, size: int, wds: bool) -> None:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.wds = wds
        self.iterator = DALIGenericIterator(
            [pipe], ["images", "labels"], reader_name="reader", last_batch_policy=LastBatchPolicy.DROP, auto_reset=True
        )
        self.size = size

    def __len__(self) -> int:
        return len(self.iterator)

    def __iter__(self) -> Iterator[FaceBatch]:
        for out in self.iterator:
            images, raw = out[0]["images"], out[0]["labels"]
            labels = _labels_from_ascii(raw) if self.wds else raw.reshape(-1).to(torch.int64)
            yield FaceBatch(images=images, labels=labels)


class DaliSource(TrainSource):
    """Training batches from an NVIDIA DALI GPU pipeline (optional; untested here, see the module docstring).

    Args:
        root: RecordIO folder (``train.rec``/``train.idx``/``property``) or WebDataset shard folder
            (``shards.json``, local paths only).
        kind: ``recordio`` or ``wds``; ``auto`` picks from the files in ``root``.
        seed: DALI pipeline seed.
        shuffle_buffer: Samples in DALI's reader shuffle buffer (``initial_fill``).
        num_threads: CPU threads of the DALI pipeline.
        device_id: CUDA device (default: the local rank's device, ``torch.cuda.current_device()``).
    """

    def __init__(
        self,
        root: str = "data/synth",
        kind: Literal["auto", "recordio", "wds"] = "auto",
        seed: int = 0,
        shuffle_buffer: int = 4096,
        num_threads: int = 4,
        device_id: int | None = None,
    ) -> None:
        _import_dali()  # fail when the config is read, with the install command, not at the first batch
        self.root = Path(root)
        self.kind = kind
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.num_threads = num_threads
        self.device_id = device_id

    def _kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        if (self.root / "train.rec").is_file():
            return "recordio"
        if (self.root / "shards.json").is_file():
            return "wds"
        raise FileNotFoundError(f"{self.root}: neither train.rec nor shards.json found (DaliSource.root)")

    @property
    def num_classes(self) -> int:
        if self._kind() == "recordio":
            return RecordIOSet(self.root).num_classes
        return read_shard_index(str(self.root)).num_classes

    def _image_index(self) -> Path:
        """An ``.idx`` listing only image records (DALI would try to decode the insightface header and
        identity records otherwise), written to a temporary file."""
        import tempfile

        records = RecordIOSet(self.root)
        offsets = records.reader.offsets_of(records.keys)
        fd, name = tempfile.mkstemp(prefix="fr-dali-", suffix=".idx")
        with open(fd, "w", encoding="ascii") as f:
            f.writelines(f"{int(k)}\t{int(o)}\n" for k, o in zip(records.keys, offsets))
        return Path(name)

    def loader(self, spec: LoaderSpec, dataset: FaceSet | None = None) -> _DaliBatches:
        """The DALI batch iterator for this rank. DALI has its own threads (``spec.num_workers``
        unused), its own shuffle seeded by this source's ``seed`` (the run's unused) and no resume
        position (``spec.progress`` unused)."""
        from nvidia.dali import fn, pipeline_def, types

        self._refuse_dataset(dataset)
        world, rank = spec.ranks()
        batch_size, image_size, hflip = spec.batch_size, spec.image_size, spec.hflip
        device = torch.cuda.current_device() if self.device_id is None else self.device_id
        kind = self._kind()
        idx_path = self._image_index() if kind == "recordio" else None

        @pipeline_def(batch_size=batch_size, num_threads=self.num_threads, device_id=device, seed=self.seed + rank)
        def pipe() -> Any:
            if kind == "recordio":
                jpegs, labels = fn.readers.mxnet(
                    path=[str(self.root / "train.rec")],
                    index_path=[str(idx_path)],
                    shard_id=rank,
                    num_shards=world,
                    random_shuffle=True,
                    initial_fill=self.shuffle_buffer,
                    name="reader",
                )
            else:
                index = read_shard_index(str(self.root))
                jpegs, labels = fn.readers.webdataset(
                    paths=[index.url(i) for i in range(len(index.files))],
                    ext=["jpg;jpeg;png", "cls"],
                    missing_component_behavior="error",
                    shard_id=rank,
                    num_shards=world,
                    random_shuffle=True,
                    initial_fill=self.shuffle_buffer,
                    name="reader",
                )
                labels = fn.pad(labels, fill_value=0, shape=[12])
            images = fn.decoders.image(jpegs, device="mixed", output_type=types.RGB)
            images = fn.resize(images, resize_x=image_size, resize_y=image_size)
            mirror = fn.random.coin_flip(probability=0.5) if hflip else 0
            images = fn.crop_mirror_normalize(
                images, dtype=types.FLOAT, output_layout="CHW", mean=[127.5] * 3, std=[127.5] * 3, mirror=mirror
            )
            return images, labels

        p = pipe()
        p.build()
        return _DaliBatches(p, image_size, wds=kind == "wds")
