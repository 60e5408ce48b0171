"""Record per-step training-loss sequences for the MHLR tests (run once; the outputs are committed).

    python tests/data/mhlr/record_losses.py --out-dir tests/data/mhlr

Each sequence is the loss of a real SGD run, recorded step by step: ArcFace (s = 16, m = 0.3,
this package's head) on a linear embedding (64 → 32) of fixed Gaussian-cluster features
(100 classes × 40 samples), class centres trained with it, batch 64, SGD lr 0.1, momentum 0.9,
constant LR, seed 0, CPU (one thread), float32. ``clean``: correct labels; ``noisy40``: 40 % of the labels
replaced by another class (symmetric), so the loss plateaus high. One loss per line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from fr_lightning.heads import ArcFace


def record(steps: int, noise: float, seed: int = 0) -> list[float]:
    """Losses of ``steps`` SGD steps of the run described in the module docstring."""
    g = torch.Generator().manual_seed(seed)
    classes, per_class, dim = 100, 40, 64
    centres = torch.randn(classes, dim, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = centres[labels] + 1.5 * torch.randn(len(labels), dim, generator=g)
    flip = torch.rand(len(labels), generator=g) < noise
    shift = torch.randint(1, classes, (len(labels),), generator=g)
    labels = torch.where(flip, (labels + shift) % classes, labels)
    torch.manual_seed(seed)
    embed = torch.nn.Linear(dim, 32)
    weight = torch.nn.Parameter(0.01 * torch.randn(classes, 32, generator=g))
    head = ArcFace(s=16.0, m=0.3)
    opt = torch.optim.SGD([*embed.parameters(), weight], lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (64,), generator=g)
        cosine = F.normalize(embed(features[idx])) @ F.normalize(weight).t()
        loss = F.cross_entropy(head(cosine, labels[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, noise in (("clean", 0.0), ("noisy40", 0.4)):
        losses = record(args.steps, noise)
        path = args.out_dir / f"arcface_{name}_{args.steps}.txt"
        path.write_text("".join(f"{v:.6g}\n" for v in losses))
        print(f"{path}: {len(losses)} losses, first {losses[0]:.4f}, last {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
