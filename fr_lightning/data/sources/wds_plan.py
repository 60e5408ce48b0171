"""Which samples of a sharded set each (rank, worker) reads in an epoch, and where a resumed epoch restarts.

Pure functions of integers, shared by every rank so they agree without talking to each other.

Epoch plan (:func:`plan_epoch`): shards are put in a seeded random order (the same on every rank),
samples keep their file order inside a shard, and the resulting sequence is cut into
``world_size`` equal contiguous slices (the ``num_samples % world_size`` tail is left out, so every
rank reads the same number of samples) and each slice into ``num_workers`` near-equal pieces. A
piece covers whole shards except at its two ends, so a worker opens only its own shards plus at
most two it shares with a neighbour. The shuffle buffer then mixes each piece.

Resume (:func:`resume_point`): a DataLoader with ``W`` workers returns batches round-robin (worker
0, 1, ..., W-1, 0, ...; a worker that runs out is skipped). After ``B`` batches of an epoch, the
next batch comes from some worker ``s``; a restarted DataLoader always asks worker 0 first, so
worker ``w`` of the resumed run takes over the piece of worker ``(s + w) % W`` and skips the
batches that piece already delivered. The resumed batch sequence is then the uninterrupted one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plan_epoch", "piece_sizes", "batches_per_piece", "resume_point"]


def piece_sizes(num_samples: int, world_size: int, num_workers: int) -> list[int]:
    """Samples in each worker's piece of one rank's slice (the same for every rank)."""
    per_rank = num_samples // world_size
    bounds = (np.arange(num_workers + 1) * per_rank) // num_workers
    return np.diff(bounds).astype(int).tolist()


def batches_per_piece(pieces: list[int], batch_size: int, drop_last: bool = True) -> list[int]:
    """Batches each worker's piece yields (the last partial batch is dropped when ``drop_last``)."""
    return [p // batch_size if drop_last else -(-p // batch_size) for p in pieces]


def plan_epoch(
    shard_sizes: np.ndarray,
    epoch: int,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
    shuffle: bool = True,
) -> list[tuple[int, int, int]]:
    """The ``(shard, start, stop)`` ranges one (rank, worker) reads in an epoch, in reading order.

    Every rank computes the same global order (seeded by ``seed`` and ``epoch``), so the ranges of
    all (rank, worker) pairs are disjoint and together cover ``world_size * (N // world_size)``
    samples.
    """
    if not 0 <= rank < world_size or not 0 <= worker < num_workers:
        raise ValueError(f"bad rank/worker {rank}/{world_size}, {worker}/{num_workers}")
    sizes = np.asarray(shard_sizes, dtype=np.int64)
    order = np.random.default_rng([seed, epoch]).permutation(len(sizes)) if shuffle else np.arange(len(sizes))
    per_rank = int(sizes.sum()) // world_size
    lo = rank * per_rank
    bounds = lo + (np.arange(num_workers + 1) * per_rank) // num_workers
    start, stop = int(bounds[worker]), int(bounds[worker + 1])
    plan: list[tuple[int, int, int]] = []
    pos = 0
    for shard in order.tolist():
        n = int(sizes[shard])
        a, b = max(start, pos), min(stop, pos + n)
        if a < b:
            plan.append((shard, a - pos, b - pos))
        pos += n
        if pos >= stop:
            break
    return plan


def resume_point(batches: list[int], batches_done: int) -> tuple[int, list[int]]:
    """Where an epoch interrupted after ``batches_done`` batches continues.

    Args:
        batches: Batches each worker's piece yields in a full epoch (:func:`batches_per_piece`).
        batches_done: Batches the trainer consumed (on this rank) before the interruption.

    Returns:
        ``(s, done)``: the worker whose batch comes next, and the batches each worker already
        delivered.
    """
    workers = len(batches)
    total = sum(batches)
    if not 0 <= batches_done <= total:
        raise ValueError(f"batches_done={batches_done} is outside this epoch's 0..{total} batches")
    full_rounds = min(batches)
    if batches_done < full_rounds * workers:  # every worker still active: plain round-robin
        rounds, extra = divmod(batches_done, workers)
        return extra, [rounds + (w < extra) for w in range(workers)]
    done = [full_rounds] * workers
    left = batches_done - full_rounds * workers
    k = full_rounds
    while True:  # the tail, where workers that ran out are skipped
        for w in range(workers):
            if done[w] < batches[w]:
                if left == 0:
                    return w, done
                done[w] += 1
                left -= 1
        k += 1
        if all(d >= b for d, b in zip(done, batches)):
            return 0, done
