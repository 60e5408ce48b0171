"""Lightning training step vs a plain PyTorch loop: same model, same data, same optimizer.

    python benchmarks/lightning_overhead.py [--steps 60] [--batch 64] [--repeats 3]

Both loops train `FaceRecognitionModule` (iResNet-18 width 1/4, 56 px, ArcFace) on the same
pre-rendered synthetic batches held in memory, so data loading costs nothing in either. The
plain loop calls the module's own forward/loss code directly; the Lightning loop runs
`Trainer.fit` with logging at its default cadence. Alternating repeats cancel slow drifts of a
shared machine; the table reports the median time per step and the ratio (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from fr_lightning.backbones import iresnet18
from fr_lightning.batch import FaceBatch
from fr_lightning.data.synthetic_sets import SyntheticFaceDataset
from fr_lightning.data.synthetic import FaceRenderer
from fr_lightning.batch import collate_faces
from fr_lightning.functional.reduce import reduce_loss
from fr_lightning.heads import ArcFace
from fr_lightning.module import FaceRecognitionModule
from fr_lightning.schedules import LRSchedule

OUT = Path(__file__).resolve().parent / "results"


def make_batches(n: int, batch: int) -> list[FaceBatch]:
    data = SyntheticFaceDataset(FaceRenderer(seed=0, image_size=56), num_identities=200, samples_per_identity=50)
    loader = DataLoader(data, batch_size=batch, shuffle=True, collate_fn=collate_faces, drop_last=True)
    out = []
    for b in loader:
        out.append(b)
        if len(out) == n:
            return out
    raise ValueError("not enough data")


def make_module(seed: int) -> FaceRecognitionModule:
    torch.manual_seed(seed)
    return FaceRecognitionModule(
        backbone=iresnet18(width=0.25, input_size=56, embedding_dim=128),
        head=ArcFace(s=32.0, m=0.5),
        num_classes=200,
        lr_schedule=LRSchedule("poly"),
    )


def plain_loop(batches: list[FaceBatch], warmup: int) -> float:
    """Seconds per step of a hand-written loop over the module's parts."""
    module = make_module(0)
    module.train()
    groups = module.parameter_groups()
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    total = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: module.lr_schedule.factor(s, total))
    start = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        out = module.forward_train(batch.images, batch.labels)
        loss = reduce_loss(out.per_sample_loss, valid=out.labels >= 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss.item()  # the Lightning loop also syncs the loss value each step for logging
    return (time.perf_counter() - start) / (len(batches) - warmup)


class StepTimer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = 0.0
        self.end = 0.0
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.end = time.perf_counter()
        self.steps = batch_idx + 1 - self.warmup


def lightning_loop(batches: list[FaceBatch], warmup: int) -> float:
    """Seconds per step of `Trainer.fit` over the same batches."""
    module = make_module(0)
    module.optimizer_factory = lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / timer.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    batches = make_batches(args.steps, args.batch)
    plain, light = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(batches, args.warmup))
        light.append(lightning_loop(batches, args.warmup))
    p, l = statistics.median(plain), statistics.median(light)
    rows = [("plain PyTorch loop", p, 1.0), ("Lightning Trainer.fit", l, l / p)]
    print(f"{'loop':<24} {'ms/step':>9} {'ratio':>7}")
    for name, t, r in rows:
        print(f"{name:<24} {1000 * t:>9.1f} {r:>7.3f}")
    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "lightning_overhead",
        "command": "python benchmarks/lightning_overhead.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "threads": torch.get_num_threads(),
        "plain_s_per_step": plain,
        "lightning_s_per_step": light,
        "ratio_median": l / p,
    }
    (OUT / "lightning_overhead.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
