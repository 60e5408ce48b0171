"""PartialFC: equals a full FC (one process and 2 gloo ranks), sampling, elastic checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from fr_lightning.classifiers import FullFC, PartialFC
from fr_lightning.classifiers.partial_fc import shard_bounds
from fr_lightning.heads import ArcFace

WORLD, D_IN, D, C, B = 2, 6, 8, 11, 4  # C = 11: uneven shards (6 + 5 classes)


def global_batch(step: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    feats = torch.randn(WORLD * B, D_IN, generator=g)
    labels = torch.randint(0, C, (WORLD * B,), generator=g)
    labels[3] = -1  # an ignored sample
    return feats, labels


def make_parts(classifier_cls: type = FullFC, **kwargs: object) -> tuple[nn.Linear, nn.Module, ArcFace]:
    torch.manual_seed(0)
    backbone = nn.Linear(D_IN, D)
    classifier = classifier_cls(D, C, **kwargs)
    return backbone, classifier, ArcFace(s=16.0, m=0.3)


def step_loss(backbone: nn.Module, classifier: nn.Module, head: nn.Module, feats: Tensor, labels: Tensor) -> Tensor:
    """The module's loss path: backbone -> classifier -> head -> classifier CE -> mean over valid rows."""
    emb = backbone(feats)
    scores = classifier(emb, labels)
    cosine, target = scores
    logits = head(cosine, target, norms=scores.rows.norm(dim=1))  # every rank's rows under PartialFC
    per_sample = classifier.cross_entropy(logits, target)
    valid = (labels >= 0).float()
    return (per_sample * valid).sum() / valid.sum()


def reference(step_count: int = 1) -> dict[str, Tensor]:
    backbone, fc, head = make_parts(FullFC)
    feats, labels = global_batch()
    # DDP objective: mean over ranks of each rank's mean over its own valid rows.
    losses = [step_loss(backbone, fc, head, feats[r * B : (r + 1) * B], labels[r * B : (r + 1) * B]) for r in range(WORLD)]
    loss = torch.stack(losses).mean()
    loss.backward()
    return {"loss": loss.detach(), "w": fc.weight.grad.clone(), "bb": backbone.weight.grad.clone()}


def test_single_process_r1_equals_full_fc() -> None:
    backbone, fc, head = make_parts(FullFC)
    backbone2, pfc, head2 = make_parts(PartialFC)
    assert torch.equal(fc.weight, pfc.weight)
    feats, labels = global_batch()
    a = step_loss(backbone, fc, head, feats, labels)
    b = step_loss(backbone2, pfc, head2, feats, labels)
    a.backward(), b.backward()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # FullFC's F.cross_entropy and PartialFC's lean CE round differently in float32 (the softmax
    # is rebuilt from the log-sum-exp in backward), times s = 16: agreement to ~2e-5 relative.
    torch.testing.assert_close(fc.weight.grad, pfc.weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(backbone.weight.grad, backbone2.weight.grad, rtol=1e-4, atol=1e-7)


def test_single_process_sampling_keeps_positives() -> None:
    pfc = PartialFC(D, 100, sample_rate=0.2, subcenters=2)
    labels = torch.tensor([3, 3, 50, 99, -1, 7])
    cosine, target = pfc(torch.randn(6, D), labels)
    index = pfc.last_index
    assert cosine.shape == (6, 20 * 2) and index.numel() == 20
    assert set(labels[labels >= 0].tolist()) <= set(index.tolist())
    assert torch.equal(index[target[labels >= 0]], labels[labels >= 0]) and target[4] == -1


def sgd(params: list[nn.Parameter]) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=0.5, momentum=0.9)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    out: dict[str, object] = {}
    try:
        feats, labels = global_batch()
        mine = slice(rank * B, (rank + 1) * B)
        # r = 1: loss and gradients versus the full FC.
        backbone, pfc, head = make_parts(PartialFC)
        pfc.setup(WORLD, rank)
        loss = step_loss(backbone, pfc, head, feats[mine], labels[mine])
        loss.backward()
        for p in backbone.parameters():  # what DDP does with the backbone's gradients
            dist.all_reduce(p.grad)
            p.grad /= WORLD
        out["loss"] = loss.detach().clone()
        out["w"] = pfc.gather_rows(pfc.weight.grad)
        out["bb"] = backbone.weight.grad.clone()

        # r < 1: every positive sampled; size floor(r * C_local).
        big = PartialFC(D, 200, sample_rate=0.1)
        big.setup(WORLD, rank)
        g = torch.Generator().manual_seed(7)
        all_labels = torch.randint(0, 200, (WORLD * B,), generator=g)
        all_emb = torch.randn(WORLD * B, D, generator=g)
        scores = big(all_emb[mine], all_labels[mine])
        start, end = shard_bounds(200, WORLD, rank)
        out["sample"] = (big.last_index + start, start, end)
        out["rows"] = scores.rows.detach()  # the one all-gather of forward, reused by the criterion

        # Elastic checkpoint: one step, save full weight + momentum, continue one more step.
        backbone, pfc, head = make_parts(PartialFC)
        pfc.setup(WORLD, rank)
        opt = sgd([pfc.weight])
        step_loss(backbone, pfc, head, feats[mine], labels[mine]).backward()
        opt.step(), opt.zero_grad()
        state = {"model": pfc.state_dict(), "momentum": pfc.gather_rows(opt.state[pfc.weight]["momentum_buffer"])}
        if rank == 0:
            torch.save(state, Path(out_dir) / "ckpt.pt")
        dist.barrier()
        out["next"] = next_step_loss(Path(out_dir) / "ckpt.pt", rank, WORLD)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def next_step_loss(path: Path, rank: int, world: int) -> Tensor:
    """Load a full checkpoint on ``world`` ranks, take one optimizer step, return the next loss."""
    state = torch.load(path)
    backbone, pfc, head = make_parts(PartialFC)
    pfc.setup(world, rank)
    pfc.load_state_dict(state["model"])
    opt = sgd([pfc.weight])
    opt.state[pfc.weight]["momentum_buffer"] = pfc.local_rows(state["momentum"])
    feats, labels = global_batch(1)

    def loss_fn() -> Tensor:
        # The DDP objective (mean over the 2 original ranks' means), whatever ``world`` is.
        if world > 1:
            mine = slice(rank * B, (rank + 1) * B)
            return step_loss(backbone, pfc, head, feats[mine], labels[mine])
        return torch.stack([step_loss(backbone, pfc, head, feats[r * B : (r + 1) * B], labels[r * B : (r + 1) * B]) for r in range(WORLD)]).mean()

    loss_fn().backward()
    opt.step(), opt.zero_grad()
    loss = loss_fn().detach()
    if world > 1:
        dist.all_reduce(loss)
        loss /= world
    return loss


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    tmp = tmp_path_factory.mktemp("pfc")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)], tmp


@pytest.mark.distributed
@pytest.mark.timeout(60)
def test_two_ranks_r1_equals_full_fc(ranks: tuple[list[dict], Path]) -> None:
    outs, _ = ranks
    ref = reference()
    loss = torch.stack([o["loss"] for o in outs]).mean()
    torch.testing.assert_close(loss, ref["loss"], rtol=0, atol=1e-5)
    for o in outs:
        torch.testing.assert_close(o["w"], ref["w"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(o["bb"], ref["bb"], rtol=1e-5, atol=1e-5)
    assert ref["w"].abs().max() > 1e-3 and ref["bb"].abs().max() > 1e-3


@pytest.mark.distributed
def test_two_ranks_sampling(ranks: tuple[list[dict], Path]) -> None:
    outs, _ = ranks
    g = torch.Generator().manual_seed(7)
    all_labels = torch.randint(0, 200, (WORLD * B,), generator=g)
    all_emb = torch.randn(WORLD * B, D, generator=g)
    for o in outs:
        index, start, end = o["sample"]
        assert index.numel() == int(0.1 * (end - start)) == 10
        owned = {int(y) for y in all_labels if start <= y < end}
        assert owned <= set(index.tolist())
        assert torch.equal(o["rows"], all_emb)  # forward's rows: every rank's embeddings, in rank order


@pytest.mark.distributed
def test_checkpoint_saved_on_two_resumes_on_one_and_two(ranks: tuple[list[dict], Path]) -> None:
    outs, tmp = ranks
    assert torch.load(tmp / "ckpt.pt")["model"]["weight"].shape == (C, D)
    on_two = outs[0]["next"]
    torch.testing.assert_close(outs[1]["next"], on_two)
    torch.testing.assert_close(next_step_loss(tmp / "ckpt.pt", 0, 1), on_two, rtol=0, atol=1e-5)


TINY_CLI = [
    "--config", "recipes/arcface.yaml",
    "--config", "configs/scale/partial-fc.yaml",
    "--model.init_args.backbone.init_args.width=0.125",
    "--data.init_args.train.init_args.num_identities=7",
    "--data.init_args.train.init_args.samples_per_identity=4",
    "--data.init_args.batch_size=4",
    "--data.init_args.num_workers=0",
    "--data.init_args.val_sets=[{class_path: fr_lightning.data.SyntheticPairs, init_args: {name: synth-lfw, pairs: 40}}]",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=false",
    "--trainer.accelerator=cpu",
    "--trainer.limit_val_batches=0",
]


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_fr_fit_ddp2_partial_fc_then_resume_on_one(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    def fit(*extra: str) -> None:
        cmd = [sys.executable, "-m", "fr_lightning.cli", "fit", *TINY_CLI, f"--trainer.default_root_dir={tmp_path}", *extra]
        result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # 7 classes: uneven shards (4 + 3), which DDP would reject if it did not ignore the weight.
    for cfg in ("recipes", "configs"):
        (tmp_path / cfg).symlink_to(root / cfg)
    fit("--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_epochs=2")
    last = next(tmp_path.rglob("last.ckpt"))
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 6  # 28 samples -> 14 per rank -> 3 full batches per epoch
    assert ckpt["state_dict"]["classifier.weight"].shape == (7, 128)  # full matrix, not a shard
    index = ckpt["sharded_classifier_param"]
    assert ckpt["optimizer_states"][0]["state"][index]["momentum_buffer"].shape == (7, 128)
    last.rename(tmp_path / "two.ckpt")
    fit("--trainer.devices=1", "--trainer.max_epochs=3", f"--ckpt_path={tmp_path / 'two.ckpt'}")
    resumed = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)
    assert resumed["global_step"] == 6 + 7  # one more epoch on one device
