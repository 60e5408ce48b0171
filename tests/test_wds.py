"""Streaming shards: epoch plans across ranks/workers, reading, URIs, bad chunks, a 2-rank gloo run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from fr_lightning.batch import FaceBatch, collate_faces
from fr_lightning.data import FaceDataModule, StreamingSource
from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.recordio import encode_image
from fr_lightning.data.streaming import ShardDataset, ShardWriter, plan_epoch, read_shard_index

SIZE = 16


def _write(root: Path, n: int = 23, classes: int = 5, chunk_bytes: int = 2000, side: bool = True) -> list[bytes]:
    rng = np.random.default_rng(0)
    images = [encode_image(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), img_fmt=".png") for _ in range(n)]
    with ShardWriter(root, classes, (SIZE, SIZE), chunk_bytes) as w:
        for i, buf in enumerate(images):
            lm = np.full((5, 2), i, np.float32) if side else None
            w.add(buf, i % classes, lm, (i % 4) if side else None)
    return images


def _ids(plan: list[tuple[int, np.ndarray]], starts: np.ndarray) -> list[int]:
    return [int(starts[c] + p) for c, pos in plan for p in pos]


@pytest.mark.parametrize("world,workers", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_plan_splits_every_epoch_without_duplicates(world: int, workers: int) -> None:
    sizes = np.array([7, 3, 9, 1, 4])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for epoch in (0, 1):
        per_rank = []
        for rank in range(world):
            ids = []
            for worker in range(workers):
                ids += _ids(plan_epoch(sizes, epoch, 7, rank, world, worker, workers), starts)
            per_rank.append(ids)
        flat = [i for ids in per_rank for i in ids]
        assert len(set(flat)) == len(flat) == world * (sizes.sum() // world)
        assert {len(ids) for ids in per_rank} == {sizes.sum() // world}
    # Every rank derives the same global order; the order changes between epochs.
    assert plan_epoch(sizes, 0, 7, 0, 1)[0][0] == plan_epoch(sizes, 0, 7, 0, 1)[0][0]
    orders = {tuple(_ids(plan_epoch(sizes, e, 7), starts)) for e in range(4)}
    assert len(orders) > 1
    assert _ids(plan_epoch(sizes, 3, 7, shuffle=False), starts) == list(range(sizes.sum()))


def test_shards_round_trip_with_side_fields(tmp_path: Path) -> None:
    images = _write(tmp_path)
    index = read_shard_index(tmp_path)
    assert index.num_samples == 23 and index.num_classes == 5 and len(index.files) > 2
    ds = ShardDataset(str(tmp_path), SIZE, seed=1)
    assert [b for b, _ in ds.iter_raw()] == images
    samples = list(ds)
    assert sorted(s["index"] for s in samples) == list(range(23))
    for s in samples:
        i = s["index"]
        assert s["labels"] == i % 5 and s["group"] == i % 4 and s["images"].shape == (3, SIZE, SIZE)
        assert np.allclose(s["landmarks"][:, 1], i)  # y never changes under a flip
    batch = collate_faces(samples[:4])
    assert isinstance(batch, FaceBatch) and batch.landmarks.shape == (4, 5, 2)


def test_ranks_given_explicitly_read_disjoint_equal_shares(tmp_path: Path) -> None:
    _write(tmp_path)
    shares = []
    for rank in range(2):
        ds = ShardDataset(str(tmp_path), SIZE, rank=rank, world_size=2)
        assert len(ds) == 11
        shares.append([s["index"] for s in ds])
    assert len(shares[0]) == len(shares[1]) == 11 and not set(shares[0]) & set(shares[1])
    ds = ShardDataset(str(tmp_path), SIZE, rank=0, world_size=2)
    first, second = [s["index"] for s in ds], [s["index"] for s in ds]  # iter() advances the epoch
    assert first != second
    ds.set_epoch(0)
    assert [s["index"] for s in ds] == first


def test_dataloader_workers_split_the_rank_share(tmp_path: Path) -> None:
    _write(tmp_path)
    ds = ShardDataset(str(tmp_path), SIZE, rank=1, world_size=2)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_faces)
    seen = [int(i) for b in loader for i in b.index]
    assert len(seen) == len(set(seen)) == 11


def test_fsspec_uri(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    images = _write(tmp_path, side=False)
    fs = fsspec.filesystem("memory")
    for f in tmp_path.iterdir():
        fs.pipe(f"/fr-test-shards/{f.name}", f.read_bytes())
    try:
        ds = ShardDataset("memory://fr-test-shards", SIZE)
        assert sorted(b for b, _ in ds.iter_raw()) == sorted(images)
        assert len(list(ds)) == 23
        assert StreamingSource("memory://fr-test-shards").num_classes == 5
    finally:
        fs.rm("/fr-test-shards", recursive=True)


def test_datamodule_streaming_source(tmp_path: Path) -> None:
    _write(tmp_path)
    dm = FaceDataModule(train=StreamingSource(str(tmp_path)), val_sets=[], image_size=8, batch_size=4, num_workers=0)
    assert dm.num_classes == 5
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 5 and batches[0].images.shape == (4, 3, 8, 8)  # 23 // 4, last partial dropped
    assert batches[0].landmarks.shape == (4, 5, 2)


def test_bad_shards_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="index.json: shard index not found"):
        read_shard_index(tmp_path)
    _write(tmp_path, side=False)
    chunk = tmp_path / "chunk-00001.frs"
    data = chunk.read_bytes()
    chunk.write_bytes(data[:-10])
    ds = ShardDataset(str(tmp_path), SIZE)
    with pytest.raises(DataFormatError, match=r"chunk-00001\.frs: image offsets"):
        ds.load_chunk(1)
    chunk.write_bytes(b"NOTSHARD" + data[8:])
    with pytest.raises(DataFormatError, match=r"chunk-00001\.frs: not a shard chunk"):
        ds.load_chunk(1)
    # A label beyond num_classes (e.g. a hand-edited index) names the chunk and sample.
    chunk.write_bytes(data)
    index = json.loads((tmp_path / "index.json").read_text())
    index["num_classes"] = 2
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataFormatError, match=r"chunk-00000\.frs: sample 2 has label 2, outside \[0, 2\)"):
        ShardDataset(str(tmp_path), SIZE).load_chunk(0)
    (tmp_path / "chunk-00000.frs").unlink()
    with pytest.raises(DataFormatError, match="chunk-00000.frs: chunk listed in index.json is missing"):
        ShardDataset(str(tmp_path), SIZE).load_chunk(0)


def test_writer_rejects_inconsistent_samples(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path, 3)
    w.add(b"x", 0, group=1)
    with pytest.raises(ValueError, match="some samples but not others"):
        w.add(b"y", 1)
    with pytest.raises(ValueError, match=r"label 3 outside \[0, 3\)"):
        w.add(b"y", 3, group=0)


def _ddp_worker(rank: int, init_file: str, root: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        ds = ShardDataset(root, SIZE)  # rank and world size come from the process group
        ids = [s["index"] for s in ds]
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"len": len(ds), "ids": ids}))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_gloo_ranks_read_disjoint_shares(tmp_path: Path) -> None:
    _write(tmp_path / "shards")
    # fork: the children reuse the imported modules (spawn would re-import torch, ~8 s).
    mp.start_processes(
        _ddp_worker, args=(str(tmp_path / "init"), str(tmp_path / "shards"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert got[0]["len"] == got[1]["len"] == 11
    ids = Counter(got[0]["ids"] + got[1]["ids"])
    assert len(ids) == 22 and max(ids.values()) == 1
