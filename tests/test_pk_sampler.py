"""The P×K sampler: batch structure, disjoint equal shares over ranks, exact mid-epoch resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import lightning.pytorch as pl

from fr_lightning.data.pk_sampler import PKSampler
from fr_lightning.data.resume import ResumableLoader


class _Labels(Dataset):
    """Sample i is its own index; labels given."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> int:
        return i


def _labels(n_ids: int = 23, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 9, size=n_ids)  # some identities have 1 image (left out), some < K
    labels = np.repeat(np.arange(n_ids), counts)
    return labels[rng.permutation(len(labels))]


def _batches(sampler: PKSampler) -> list[list[int]]:
    idx = list(sampler)
    per = sampler.p * sampler.k
    assert len(idx) == len(sampler) and len(idx) % per == 0
    return [idx[i : i + per] for i in range(0, len(idx), per)]


@pytest.mark.parametrize("epoch", [0, 3])
def test_every_batch_is_p_identities_by_k_images(epoch: int) -> None:
    labels = _labels()
    s = PKSampler(_Labels(labels), labels, p=4, k=3, seed=7)
    s.set_epoch(epoch)
    batches = _batches(s)
    assert len(batches) == s.batches_per_rank > 0
    counts = np.bincount(labels)
    for b in batches:
        ids = labels[b]
        uniq, n = np.unique(ids, return_counts=True)
        assert len(uniq) == 4 and (n == 3).all()
        assert (counts[uniq] >= 2).all()  # single-image identities never appear
        for c in uniq:  # an identity repeats an image only when it has fewer than K
            imgs = [i for i in b if labels[i] == c]
            assert len(set(imgs)) == min(3, counts[c])


def test_order_is_a_function_of_seed_and_epoch() -> None:
    labels = _labels()
    a = PKSampler(_Labels(labels), labels, p=4, k=3, seed=7)
    b = PKSampler(_Labels(labels), labels, p=4, k=3, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(PKSampler(_Labels(labels), labels, p=4, k=3, seed=8)) != list(b)


@pytest.mark.parametrize("epoch", [0, 2])
def test_two_ranks_get_disjoint_equal_shares(epoch: int) -> None:
    labels = _labels(n_ids=31)
    ranks = [PKSampler(_Labels(labels), labels, p=3, k=2, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(epoch)
    shares = [_batches(s) for s in ranks]
    assert len(shares[0]) == len(shares[1]) == ranks[0].batches_per_rank > 1
    assert len(ranks[0]) == len(ranks[1])
    for b0, b1 in zip(*shares):  # the same step on both ranks: no identity in common
        assert not set(labels[b0]) & set(labels[b1])
    # together the ranks are the global order, interleaved
    glob = ranks[0].global_batches(epoch)
    assert [b for pair in zip(*shares) for b in pair] == glob


def test_too_few_identities_is_a_clear_error() -> None:
    labels = np.repeat(np.arange(3), 4)
    with pytest.raises(ValueError, match="sampler_p=4"):
        PKSampler(_Labels(labels), labels, p=4, k=2)
    with pytest.raises(ValueError, match="sampler_k"):
        PKSampler(_Labels(labels), labels, p=2, k=1)


@pytest.mark.parametrize("world", [1, 2])
def test_state_round_trip_mid_epoch_gives_the_same_batches(world: int) -> None:
    labels = _labels(n_ids=40)
    p, k = 3, 2

    def loader(rank: int, progress=None) -> ResumableLoader:
        ds = _Labels(labels)
        s = PKSampler(ds, labels, p=p, k=k, num_replicas=world, rank=rank, seed=11)
        s.set_epoch(1)
        return ResumableLoader(ds, batch_size=p * k, sampler=s, progress=progress, drop_last=True)

    for rank in range(world):
        full = [b.tolist() for b in loader(rank)]
        assert len(full) > 4
        done = 3
        first = loader(rank, progress=lambda: (1, done))
        it = iter(first)
        seen = [next(it).tolist() for _ in range(done)]
        state = first.state_dict()
        resumed = loader(rank)
        resumed.load_state_dict(state)
        rest = [b.tolist() for b in resumed]
        assert seen + rest == full


def test_data_module_serves_pk_batches_from_a_map_style_source() -> None:
    from fr_lightning.data.datamodule import FaceDataModule
    from fr_lightning.data.sources import SyntheticSource

    dm = FaceDataModule(
        train=SyntheticSource(num_identities=12, samples_per_identity=4),
        val_sets=[], image_size=24, batch_size=8, num_workers=0, sampler="pk", sampler_k=2,
    )  # fmt: skip
    assert dm.pk == (4, 2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    uniq, n = torch.unique(batch.labels, return_counts=True)
    assert len(uniq) == 4 and (n == 2).all()


def test_data_module_names_bad_pk_settings() -> None:
    from fr_lightning.data.datamodule import FaceDataModule

    with pytest.raises(ValueError, match=r"batch_size \(10\) must equal sampler_p × sampler_k \(3 × 4\)"):
        FaceDataModule(val_sets=[], batch_size=10, sampler="pk", sampler_p=3, sampler_k=4)
    with pytest.raises(ValueError, match="data.init_args.sampler must be"):
        FaceDataModule(val_sets=[], sampler="balanced")  # type: ignore[arg-type]


@pytest.mark.slow
def test_pk_run_killed_mid_epoch_resumes_bit_identical(tmp_path) -> None:  # noqa: ANN001
    """``fr fit`` with P×K batches (and the pair method's triplet term) killed at a random step and
    resumed from its last checkpoint ends bit-identical to the uninterrupted run."""
    import random
    import signal

    from tests.test_resume import STEPS, _assert_identical, _final, _fit

    pk = [
        "--data.init_args.sampler=pk",
        "--data.init_args.sampler_k=4",  # 6 identities x 4 images, batch 8: P = 2, 3 batches per epoch
        "--trainer.callbacks+={class_path: fr_lightning.methods.PairLoss, init_args: {loss: triplet}}",
    ]
    ref = tmp_path / "reference"
    ref.mkdir()
    out = _fit(ref, *pk, "--trainer.logger=false")
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc = _final(ref)
    run = tmp_path / "killed"
    run.mkdir()
    step = random.Random().randint(2, STEPS - 1)
    kill = f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: {step}}}}}"
    out = _fit(run, *pk, "--trainer.logger=false", kill)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    out = _fit(run, *pk, "--trainer.logger=false", "--ckpt_path=last")
    assert out.returncode == 0, out.stderr[-2000:]
    got, got_acc = _final(run)
    _assert_identical(got, weights)
    assert got_acc == acc, f"killed at step {step}"


class RecordLabels(pl.Callback):
    """Appends each training batch's labels to ``<path>/rank<r>.txt`` (one line per step)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:  # noqa: ANN001
        with open(f"{self.path}/rank{trainer.global_rank}.txt", "a") as f:
            f.write(" ".join(str(int(v)) for v in batch.labels.tolist()) + "\n")


@pytest.mark.slow
def test_pk_on_two_gloo_ranks_disjoint_equal_shares_and_exact_resume(tmp_path) -> None:  # noqa: ANN001
    """2-process gloo DDP with P×K batches: at every step the ranks' identities are disjoint and
    both ranks run the same number of steps; killed at a random step and resumed, the run ends
    bit-identical to the uninterrupted one."""
    import random

    from tests.test_resume import STEPS, _assert_identical, _final, _fit_ddp

    pk = ["--data.init_args.sampler=pk", "--data.init_args.sampler_k=4"]  # 12 ids x 4, batch 8: P = 2, 3 steps per epoch
    ref = tmp_path / "reference"
    ref.mkdir()
    record = f"--trainer.callbacks+={{class_path: tests.test_pk_sampler.RecordLabels, init_args: {{path: {ref}}}}}"
    out = _fit_ddp(ref, *pk, record)
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc = _final(ref)
    steps = [[list(map(int, line.split())) for line in (ref / f"rank{r}.txt").read_text().splitlines()] for r in (0, 1)]
    assert len(steps[0]) == len(steps[1]) == STEPS
    for a, b in zip(*steps):
        assert len(set(a)) == len(set(b)) == 2 and len(a) == len(b) == 8
        assert not set(a) & set(b)
    run = tmp_path / "killed"
    run.mkdir()
    step = random.Random().randint(2, STEPS - 1)
    kill = f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: {step}}}}}"
    _fit_ddp(run, *pk, kill)
    out = _fit_ddp(run, *pk, "--ckpt_path=last")
    assert out.returncode == 0, out.stderr[-2000:]
    got, got_acc = _final(run)
    _assert_identical(got, weights)
    assert got_acc == acc, f"killed at step {step}"
