"""Per-sample seeded augmentation and resumable loaders: independent of workers, exact on resume."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fr_lightning.batch import collate_faces
from fr_lightning.data import Augment, SyntheticSource, WdsWriter, encode_image
from fr_lightning.data.resume import (
    ResumableLoader,
    ResumableSampler,
    ResumableStreamLoader,
    SampleSeeds,
    SeededFetch,
    epoch_key_base,
    index_key,
    key_uniform,
    sample_keys,
)
from fr_lightning.data.sources.wds import WdsDataset

SIZE = 16


def _synthetic():  # noqa: ANN202
    return SyntheticSource(num_identities=6, samples_per_identity=4).dataset(SIZE, hflip=True)


def _loader(dataset, world: int = 1, rank: int = 0, batch: int = 4, workers: int = 0, progress=None) -> ResumableLoader:  # noqa: ANN001
    sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, seed=5)
    return ResumableLoader(
        dataset, batch, sampler, progress=progress, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, collate_fn=collate_faces,
    )  # fmt: skip


def _epoch(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:  # noqa: ANN001
    loader.sampler.set_epoch(epoch)
    return [(b.images.clone(), b.index.clone()) for b in loader]


def _same(a: list, b: list) -> None:  # noqa: ANN001
    assert len(a) == len(b)
    for (ia, xa), (ib, xb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ia, ib)


def test_sample_keys_are_a_pure_function_of_seed_epoch_index() -> None:
    k = sample_keys([3, 4, 5], seed=1, epoch=2)
    assert np.array_equal(k, sample_keys([3, 4, 5], seed=1, epoch=2))
    assert np.array_equal(k[1:], sample_keys([4, 5], seed=1, epoch=2))  # not of the batch it sits in
    assert len({*k.tolist(), *sample_keys([3, 4, 5], 1, 3).tolist(), *sample_keys([3, 4, 5], 2, 2).tolist()}) == 9
    u = key_uniform(sample_keys(np.arange(20_000), 0, 0))
    assert 0.48 < float((u < 0.5).mean()) < 0.52
    assert [key_uniform(int(x)) for x in k] == key_uniform(k).tolist()


#: sample_keys(KEY_INDICES, seed, epoch) as computed before the mixing was folded into one function
#: (commit 4634c9a): every key, and so every augmentation draw, must stay what it was.
KEY_INDICES = [0, 1, 5, 1000, 2**40]
KEY_TABLE = {
    (0, 0): [0x16A8F9D02D77CE33, 0x0F1ABCE7FBDE7BEE, 0x42B5BCAF61EEA72C, 0x6E71E71A05537C79, 0x66429C32753B7253],
    (1, 2): [0xB411662ABFD5BA59, 0xB7467D28C1901F90, 0xE86CFCAB13527F54, 0x1079E064197572CC, 0x4802559477B59254],
    (12345, 7): [0x22E9E3BA4E84CDF4, 0x3290417700BBDDD7, 0x66ECFDD217ACDEB9, 0x58A379C5411D89B2, 0x6C3F95280A1F53EB],
    (2**64 - 1, 2**40): [0x3218092D922F53FF, 0x14FE6CA966835B96, 0x073BD092895D16C2, 0x682261EF399BACEB, 0x5826F9F4AAD95225],
}


def test_sample_keys_match_the_pinned_table() -> None:
    for (seed, epoch), expected in KEY_TABLE.items():
        keys = sample_keys(KEY_INDICES, seed, epoch)
        assert keys.dtype == np.uint64 and keys.tolist() == expected, (seed, epoch)
        base = epoch_key_base(seed, epoch)
        assert [index_key(base, i) for i in KEY_INDICES] == expected  # the streaming source's path
    assert key_uniform(sample_keys([0, 1, 5], 3, 4), stream=2).tolist() == [
        0.6428353348137097,
        0.6843814215320726,
        0.7683380556575572,
    ]


def test_flips_do_not_depend_on_workers_and_fetching_leaves_global_rngs_alone() -> None:
    ds = _synthetic()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    inline = [_epoch(_loader(ds), e) for e in (0, 1)]
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]
    workers = _loader(ds, workers=2)
    _same(inline[0], _epoch(workers, 0))
    _same(inline[1], _epoch(workers, 1))
    # Flips happen, and differ between epochs for the same sample.
    first = {int(i): x for imgs, idx in inline[0] for i, x in zip(idx, imgs)}
    second = {int(i): x for imgs, idx in inline[1] for i, x in zip(idx, imgs)}
    mirrored = [i for i in first if torch.equal(first[i], second[i].flip(-1))]
    assert 0 < len(mirrored) < len(first)


def test_loader_resumes_mid_epoch_with_two_workers() -> None:
    ds = _synthetic()
    full = _epoch(_loader(ds, workers=2), 1)
    loader = _loader(ds, workers=2, progress=lambda: (1, 2))
    state = loader.state_dict()
    resumed = _loader(ds, workers=2)
    resumed.load_state_dict(state)
    _same(full[2:], _epoch(resumed, 1))


def test_resume_on_another_world_size_skips_the_global_prefix() -> None:
    ds = _synthetic()  # 24 samples: 2 ranks x 3 batches of 4, or 1 rank x 3 batches of 8
    two = [_epoch(_loader(ds, world=2, rank=r), 0) for r in (0, 1)]
    state = _loader(ds, world=2, progress=lambda: (0, 1)).state_dict()
    one = _loader(ds, world=1, batch=8)
    one.load_state_dict(state)
    rest = _epoch(one, 0)
    assert len(rest) == 2
    seen = {int(i) for r in two for _, idx in r[:1] for i in idx}
    for k, (images, idx) in enumerate(rest):
        # The same samples as the two ranks' global batch, with the same augmentation.
        want = {int(i): x for r in two for imgs, ix in r[k + 1 : k + 2] for i, x in zip(ix, imgs)}
        assert set(idx.tolist()) == set(want) and not seen & set(want)
        for i, x in zip(idx.tolist(), images):
            assert torch.equal(x, want[i])


def test_augment_pipeline_is_a_function_of_the_sample_key() -> None:
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    lm = np.tile(np.array([[10.0, 12.0]], np.float32), (5, 1))
    full = Augment(random_resized_crop=1.0, brightness_contrast=1.0, blur=0.5, downscale=0.5, jpeg=0.5)
    other = Augment(random_resized_crop=1.0, brightness_contrast=1.0, blur=0.5, downscale=0.5, jpeg=0.5)
    keys = sample_keys(range(6), 0, 0).tolist()
    a = [full(img, lm, key=k) for k in keys]
    other(img, lm)  # a different history of the other pipeline changes nothing
    b = [other(img, lm, key=k) for k in reversed(keys)][::-1]
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.landmarks, y.landmarks) and x.flipped == y.flipped
    assert len({x.image.tobytes() for x in a}) == len(a)


def _shards(root: Path, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    with WdsWriter(root, 4, (SIZE, SIZE), max_count=6) as w:
        for i in range(n):
            w.add(encode_image(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), img_fmt=".png"), i % 4)


def _stream(root: Path, workers: int, progress=None) -> ResumableStreamLoader:  # noqa: ANN001
    ds = WdsDataset(str(root), SIZE, Augment(hflip=True), seed=3, shuffle_buffer=8)
    ds.bind_loader(4, workers)
    return ResumableStreamLoader(ds, 4, progress=progress, seed=3, drop_last=True, num_workers=workers, collate_fn=collate_faces)


def test_stream_loader_follows_the_trainer_epoch_and_resumes(tmp_path: Path) -> None:
    _shards(tmp_path)
    epoch = [0]
    loader = _stream(tmp_path, 0, progress=lambda: (epoch[0], 0))  # workers: tests/test_wds.py
    runs = {}
    for e in (1, 0, 1):  # the pass reads the trainer's epoch, whatever came before
        epoch[0] = e
        runs.setdefault(e, []).append([(b.images.clone(), b.index.clone()) for b in loader])
    _same(runs[1][0], runs[1][1])
    assert not torch.equal(runs[0][0][0][1], runs[1][0][0][1])
    state = _stream(tmp_path, 0, progress=lambda: (1, 3)).state_dict()
    assert (state["epoch"], state["batches_done"]) == (1, 3)
    resumed = _stream(tmp_path, 0, progress=lambda: (1, 3))
    resumed.load_state_dict(state)
    _same(runs[1][0][3:], [(b.images, b.index) for b in resumed])
    with pytest.raises(ValueError, match="num_workers was 0"):
        _stream(tmp_path, 1).load_state_dict(state)
