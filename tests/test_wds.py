"""WebDataset shards: convert/read-back exactness, tar compatibility, epoch plans, resume, URIs, bad shards, 2-rank gloo."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from fr_lightning.batch import FaceBatch, collate_faces
from fr_lightning.data import (
    Augment,
    DataFormatError,
    FaceDataModule,
    RecordIOSet,
    WdsDataset,
    WdsSource,
    WdsWriter,
    decode_image,
    encode_image,
    read_shard_index,
)
from fr_lightning.data.formats.wds import iter_shard
from fr_lightning.data.sources.wds_plan import batches_per_piece, piece_sizes, plan_epoch, resume_point
from fr_lightning.cli import data as data_cli

SIZE = 16


def _write(root: Path, n: int = 23, classes: int = 5, per_shard: int = 5, side: bool = True) -> list[bytes]:
    rng = np.random.default_rng(0)
    images = [encode_image(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), img_fmt=".png") for _ in range(n)]
    with WdsWriter(root, classes, (SIZE, SIZE), max_count=per_shard) as w:
        for i, buf in enumerate(images):
            lm = np.full((5, 2), i, np.float32) if side else None
            w.add(buf, i % classes, lm, (i % 4) if side else None)
    return images


def _ds(root: Path, **kw: object) -> WdsDataset:
    kw.setdefault("augment", Augment(hflip=False))
    return WdsDataset(str(root), SIZE, **kw)  # type: ignore[arg-type]


def _digest(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()


# --------------------------------------------------------------------------- convert, read back, tar


def test_convert_to_wds_reads_back_pixel_and_label_exact(tmp_path: Path) -> None:
    data_cli.synth(tmp_path / "rec", identities=6, per_identity=4, image_size=SIZE, fmt="png", pairs=0)
    data_cli.main(["convert", str(tmp_path / "rec"), str(tmp_path / "wds"), "--to", "wds", "--max-count", "7"])
    rec = RecordIOSet(tmp_path / "rec")
    want = Counter()
    for j in range(len(rec)):
        buf, label = rec.read(j)
        want[(_digest(decode_image(buf, "rec")), int(label))] += 1
    index = read_shard_index(tmp_path / "wds")
    assert (index.num_samples, index.num_classes, index.image_size, len(index.files)) == (24, 6, (SIZE, SIZE), 4)
    raw = [s for k in range(len(index.files)) for s in iter_shard(index, k)]
    got = Counter((_digest(decode_image(s.image, "wds")), s.label) for s in raw)  # type: ignore[union-attr]
    assert got == want  # PNG: every pixel and every label survives
    # Through the training dataset too (no flip): normalised pixels equal the RecordIO pixels.
    samples = list(_ds(tmp_path / "wds", shuffle=False))
    assert len(samples) == 24
    decoded = Counter()
    for s in samples:
        img = ((s["images"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        decoded[(_digest(img), s["labels"])] += 1
    assert decoded == want


def test_plain_tar_lists_the_samples(tmp_path: Path) -> None:
    _write(tmp_path, n=7, per_shard=4)
    index = json.loads((tmp_path / "shards.json").read_text())
    assert index["__kind__"] == "wids-shard-index-v1"
    assert [s["nsamples"] for s in index["shardlist"]] == [4, 3]
    out = subprocess.run(["tar", "tf", str(tmp_path / "shard-000000.tar")], capture_output=True, text=True, check=True)
    names = out.stdout.split()
    assert names == [f"{i:09d}.{ext}" for i in range(4) for ext in ("cls", "json", "png")]
    with tarfile.open(tmp_path / "shard-000001.tar") as tar:
        assert tar.extractfile("000000005.cls").read() == b"0"  # type: ignore[union-attr]
        assert json.loads(tar.extractfile("000000005.json").read())["group"] == 1  # type: ignore[union-attr]


# --------------------------------------------------------------------------- plans and resume


@pytest.mark.parametrize("world,workers", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_plan_splits_every_epoch_without_duplicates(world: int, workers: int) -> None:
    sizes = np.array([7, 3, 9, 1, 4])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for epoch in (0, 1):
        per_rank = []
        for rank in range(world):
            ids = [int(starts[s] + p) for w in range(workers) for s, a, b in plan_epoch(sizes, epoch, 7, rank, world, w, workers) for p in range(a, b)]
            per_rank.append(ids)
        flat = [i for ids in per_rank for i in ids]
        assert len(set(flat)) == len(flat) == world * (sizes.sum() // world)
        assert {len(ids) for ids in per_rank} == {sizes.sum() // world}
    orders = {tuple(s for s, _, _ in plan_epoch(sizes, e, 7)) for e in range(4)}
    assert len(orders) > 1
    assert plan_epoch(sizes, 3, 7, shuffle=False) == [(s, 0, int(n)) for s, n in enumerate(sizes)]


def _round_robin(batches: list[int]) -> list[int]:
    """Worker of each batch as a DataLoader returns them (a worker that ran out is skipped)."""
    order, done = [], [0] * len(batches)
    while any(d < b for d, b in zip(done, batches)):
        for w in range(len(batches)):
            if done[w] < batches[w]:
                order.append(w)
                done[w] += 1
    return order


@pytest.mark.parametrize("batches", [[3, 3], [4, 3, 3], [2, 1, 2], [5]])
def test_resume_point_continues_the_round_robin(batches: list[int]) -> None:
    order = _round_robin(batches)
    for k in range(len(order) + 1):
        first, done = resume_point(batches, k)
        assert done == [order[:k].count(w) for w in range(len(batches))]
        remaining = [b - d for b, d in zip(batches, done)]
        rotated = [remaining[(first + w) % len(batches)] for w in range(len(batches))]
        assert [(first + w) % len(batches) for w in _round_robin(rotated)] == order[k:]


def test_shuffle_buffer_is_seeded(tmp_path: Path) -> None:
    _write(tmp_path)
    first = [s["index"] for s in _ds(tmp_path, seed=3)]
    assert [s["index"] for s in _ds(tmp_path, seed=3)] == first
    assert sorted(first) == list(range(23)) and first != sorted(first)
    assert [s["index"] for s in _ds(tmp_path, seed=4)] != first
    ds = _ds(tmp_path, seed=3)
    epochs = [[s["index"] for s in ds] for _ in range(2)]  # each pass advances the epoch
    assert epochs[0] == first and epochs[1] != first and sorted(epochs[1]) == sorted(first)
    ds.set_epoch(0)
    assert [s["index"] for s in ds] == first


def test_dataloader_workers_split_the_rank_share_and_resume_exactly(tmp_path: Path) -> None:
    _write(tmp_path, n=29, per_shard=4)
    ds = _ds(tmp_path, rank=1, world_size=2, shuffle_buffer=5)
    ds.bind_loader(batch_size=2, num_workers=2)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_faces, drop_last=True)
    full = [b.index.tolist() for b in loader]
    flat = [i for b in full for i in b]
    assert len(flat) == len(set(flat)) == len(ds) == 2 * len(loader) == 12  # 14 per rank, 7 per worker, 3 batches each
    for k in (1, 2, 5):
        resumed = _ds(tmp_path, rank=1, world_size=2, shuffle_buffer=5)
        resumed.bind_loader(batch_size=2, num_workers=2)
        state = ds.state_dict(batches_done=k)
        assert state["epoch"] == 0
        resumed.load_state_dict(state)
        again = [b.index.tolist() for b in DataLoader(resumed, batch_size=2, num_workers=2, collate_fn=collate_faces, drop_last=True)]
        assert again == full[k:]
    bad = _ds(tmp_path, rank=1, world_size=2)
    bad.bind_loader(batch_size=3, num_workers=2)
    with pytest.raises(ValueError, match="batch_size was 2 in the saved run, now 3"):
        bad.load_state_dict(ds.state_dict(batches_done=1))


def test_fsspec_uri(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    images = _write(tmp_path, side=False)
    fs = fsspec.filesystem("memory")
    for f in tmp_path.iterdir():
        fs.pipe(f"/fr-test-wds/{f.name}", f.read_bytes())
    try:
        index = read_shard_index("memory://fr-test-wds")
        got = [s.image for k in range(len(index.files)) for s in iter_shard(index, k)]  # type: ignore[union-attr]
        assert got == images
        assert len(list(_ds("memory://fr-test-wds"))) == 23  # type: ignore[arg-type]
        assert WdsSource("memory://fr-test-wds").num_classes == 5
    finally:
        fs.rm("/fr-test-wds", recursive=True)


def test_datamodule_wds_source_counts_its_batches(tmp_path: Path) -> None:
    _write(tmp_path)
    dm = FaceDataModule(train=WdsSource(str(tmp_path)), val_sets=[], image_size=8, batch_size=4, num_workers=0)
    assert dm.num_classes == 5
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 5 and isinstance(batches[0], FaceBatch)  # 23 // 4
    assert batches[0].images.shape == (4, 3, 8, 8) and batches[0].landmarks.shape == (4, 5, 2)


# --------------------------------------------------------------------------- bad shards


def test_bad_shards_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="shards.json: shard index not found"):
        read_shard_index(tmp_path)
    _write(tmp_path, side=False)
    shard = tmp_path / "shard-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[:-2000])
    with pytest.raises(DataFormatError, match=r"shard-000001\.tar: shard is \d+ bytes, shards.json says"):
        list(_ds(tmp_path, shuffle=False))
    # A damaged tar header in the middle: its checksum no longer matches (tarfile would end the stream
    # early there; the sample count against shards.json catches that on the tarfile path).
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        at = tar.getmember("000000006.cls").offset  # the shard's 2nd sample
    damaged = bytearray(data)
    damaged[at + 148 : at + 156] = b"0000000\0"  # the checksum field of its first header
    shard.write_bytes(bytes(damaged))
    with pytest.raises(DataFormatError, match=rf"shard-000001\.tar: tar header at byte {at}: checksum 0 != \d+; the header is damaged"):
        list(_ds(tmp_path, shuffle=False))
    shard.write_bytes(data)
    text = (tmp_path / "shards.json").read_text()
    index = json.loads(text)
    index["fr_lightning"]["num_classes"] = 2
    (tmp_path / "shards.json").write_text(json.dumps(index))
    with pytest.raises(DataFormatError, match=r"shard-000000\.tar: sample '000000002' has label 2, outside \[0, 2\)"):
        list(_ds(tmp_path, shuffle=False, skip_corrupt=True))  # label errors are never skipped
    (tmp_path / "shards.json").write_text(text)
    shard.unlink()
    with pytest.raises(DataFormatError, match=r"shard-000001\.tar: shard listed in shards.json is missing"):
        list(_ds(tmp_path, shuffle=False))


def _corrupt_png_of(shard: Path, member: str) -> None:
    data = bytearray(shard.read_bytes())
    with tarfile.open(shard) as tar:
        info = tar.getmember(member)
    data[info.offset_data : info.offset_data + 16] = b"\0" * 16  # smash the PNG signature
    shard.write_bytes(bytes(data))


def test_corrupt_image_fails_or_is_replaced_and_counted(tmp_path: Path) -> None:
    _write(tmp_path, side=False)
    _corrupt_png_of(tmp_path / "shard-000000.tar", "000000003.png")
    with pytest.raises(DataFormatError, match=r"shard-000000\.tar: sample '000000003': cannot decode image"):
        list(_ds(tmp_path, shuffle=False))
    ds = _ds(tmp_path, shuffle=False, skip_corrupt=True)
    ids = [s["index"] for s in ds]
    assert len(ids) == 23 and 3 not in ids and ids[3] == 2 and ds.skipped == 1  # the previous good sample stands in


def test_writer_rejects_inconsistent_samples(tmp_path: Path) -> None:
    w = WdsWriter(tmp_path, 3)
    png = encode_image(np.zeros((4, 4, 3), np.uint8), img_fmt=".png")
    w.add(png, 0, group=1)
    with pytest.raises(ValueError, match="some samples but not others"):
        w.add(png, 1)
    with pytest.raises(ValueError, match=r"label 3 outside \[0, 3\)"):
        w.add(png, 3, group=0)


# --------------------------------------------------------------------------- 2 gloo ranks


def _ddp_worker(rank: int, init_file: str, root: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        dm = FaceDataModule(train=WdsSource(root, shuffle_buffer=4), val_sets=[], image_size=8, batch_size=3, num_workers=0)
        dm.setup("fit")  # rank and world size come from the process group
        epochs = []
        for _ in range(2):
            loader = dm.train_dataloader()
            epochs.append({"steps": len(list(iter(loader))), "len": len(loader), "ids": [i for b in loader for i in b.index.tolist()]})
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(epochs))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_gloo_ranks_read_disjoint_shares_in_equal_steps(tmp_path: Path) -> None:
    _write(tmp_path / "wds", n=31, per_shard=6)
    # fork: the children reuse the imported modules (spawn would re-import torch, ~8 s).
    mp.start_processes(
        _ddp_worker, args=(str(tmp_path / "init"), str(tmp_path / "wds"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for e in range(2):
        a, b = got[0][e], got[1][e]
        assert a["steps"] == b["steps"] == a["len"] == b["len"] == 5  # 15 samples per rank, batches of 3
        ids = Counter(a["ids"] + b["ids"])
        assert len(ids) == 30 and max(ids.values()) == 1  # disjoint, the 31st sample left out
    assert got[0][0]["ids"] != got[0][1]["ids"]  # epochs differ


def test_dali_source_without_dali_says_how_to_install() -> None:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("DALI is installed here")
    from fr_lightning.data import DaliSource

    with pytest.raises(ImportError, match=r"pip install --extra-index-url https://pypi.nvidia.com nvidia-dali-cuda120"):
        DaliSource(root="data/synth")


class _GeneralPath(Augment):
    """A flip-only augmentation routed through the general (albumentations-capable) decode path."""

    @property
    def uses_albumentations(self) -> bool:
        return True

    def _build(self, height: int, width: int) -> object:
        return _Identity()


class _Identity:
    """An albumentations-like pipeline that changes nothing."""

    def __call__(self, image: np.ndarray, **kw: object) -> dict[str, object]:
        return {"image": image, **kw}

    def set_random_seed(self, seed: int) -> None:
        pass


def test_flip_fast_path_equals_the_general_path(tmp_path: Path) -> None:
    _write(tmp_path, n=12, side=True)
    fast = list(_ds(tmp_path, augment=Augment(hflip=True), shuffle_buffer=4))
    general = _ds(tmp_path, augment=_GeneralPath(hflip=True), shuffle_buffer=4)
    slow = list(general)
    assert [s["index"] for s in fast] == [s["index"] for s in slow]
    flipped = 0
    for a, b in zip(fast, slow):
        assert torch.equal(a["images"], b["images"]) and np.array_equal(a["landmarks"], b["landmarks"])
        flipped += int(a["landmarks"][0, 0] != a["index"])
    assert 0 < flipped < len(fast)
