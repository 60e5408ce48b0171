"""Stateful heads under 2 gloo ranks: buffers stay in sync and equal a single-process run.

Each rank feeds a different batch (different sizes, one step where a rank has no positive);
the statistics are all-reduced, so both ranks must hold the state a single process gets
from the concatenated batch, and produce the same logits for their rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fr_lightning.heads import AdaFace, AdaSin, CurricularFace, MarginHead

pytestmark = pytest.mark.distributed

WORLD, STEPS, C = 2, 3, 12
ROWS = (5, 7)  # rank 0 and rank 1 batch sizes


def make_heads() -> dict[str, MarginHead]:
    return {
        "curricularface": CurricularFace(momentum=0.1),
        "adaface": AdaFace(t_alpha=0.2),
        "adasin": AdaSin(h_p=0.3, momentum=0.1),
    }


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    rows = ROWS[rank]
    cos = torch.rand(rows, C, generator=g) * 1.8 - 0.9
    labels = torch.randint(0, C, (rows,), generator=g)
    labels[0] = -1
    if (rank, step) == (1, 2):
        labels[:] = -1  # no positive on this rank at all
    norms = torch.rand(rows, generator=g) * 40 + 2
    return cos, labels, norms


def run(heads: dict[str, MarginHead], cos: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor) -> dict:
    return {name: head(cos, labels, norms=norms).detach() for name, head in heads.items()}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        heads = make_heads()
        logits = [run(heads, *batch(rank, step)) for step in range(STEPS)]
        states = {name: {k: v.clone() for k, v in head.state_dict().items()} for name, head in heads.items()}
        torch.save({"logits": logits, "states": states}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(60)
def test_stateful_heads_sync_across_ranks(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    heads = make_heads()
    for step in range(STEPS):
        parts = [batch(r, step) for r in range(WORLD)]
        single = run(heads, *(torch.cat(p) for p in zip(*parts)))
        for name, out in single.items():
            torch.testing.assert_close(ranks[0]["logits"][step][name], out[: ROWS[0]], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(ranks[1]["logits"][step][name], out[ROWS[0] :], rtol=1e-5, atol=1e-5)

    for name, head in heads.items():
        for key, value in head.state_dict().items():
            assert torch.equal(ranks[0]["states"][name][key], ranks[1]["states"][name][key]), (name, key)
            torch.testing.assert_close(ranks[0]["states"][name][key], value, rtol=1e-6, atol=1e-7)
    assert heads["curricularface"].t != 0 and heads["adaface"].batch_std != 100.0
