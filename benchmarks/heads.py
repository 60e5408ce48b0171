"""Speed and memory of every margin head in one training step (forward + backward).

The step is what training does around a head: normalise a batch of embeddings and the class
centres, cosine matrix, head, loss (cross-entropy on the logits, or SFace's per-sample loss,
plus the head's loss terms), backward into embeddings and centres. The numbers are a whole
classifier step; the ratio to NormFace is the head's overhead on it.

Time: all heads in one process, one warm-up step each, then ``--repeats`` rounds in which every
head runs one timed step (interleaved, so load from other processes hits all heads alike);
the median is reported.

Memory: each head in a fresh process, one step. Peak = the process's peak resident set size
(``ru_maxrss``) minus its resident size just before the step (centres and embeddings already
allocated). glibc's mmap threshold is pinned at 64 KiB for that process, so every tensor lives
in its own mapping, returned to the OS on free: the resident set follows live tensor memory
(plus allocator slack). With ``--device cuda`` it is ``torch.cuda.max_memory_allocated``
above the allocation before the step.

    python benchmarks/heads.py                      # B=512, D=512, C=100,000 on CPU
    python benchmarks/heads.py --classes 10000 --heads arcface,adasin
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib() -> int:
    """Current resident set size of this process (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def make_step(name: str, batch: int, dim: int, classes: int, device: str) -> tuple[Callable[[], None], int]:
    """A closure running one forward + backward of the head, and the head's sub-centre count."""
    import torch
    import torch.nn.functional as F

    from fr_lightning.heads import HEADS, UNPG, ArcFace

    torch.manual_seed(0)
    head = (UNPG(ArcFace()) if name == "unpg" else HEADS[name]()).to(device).train()
    centres = torch.randn(classes * head.subcenters, dim, device=device, requires_grad=True)
    embeddings = torch.randn(batch, dim, device=device).mul_(4).requires_grad_()
    labels = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        centres.grad = embeddings.grad = None
        unit = F.normalize(embeddings, dim=1)
        cosine = unit @ F.normalize(centres, dim=1).t()
        norms = embeddings.norm(dim=1)
        logits = head(cosine, labels, norms=norms, embeddings=unit)
        per_sample = head.loss(cosine, labels, norms=norms, embeddings=unit)
        loss = F.cross_entropy(logits, labels) if per_sample is None else per_sample.mean()
        for term in head.loss_terms(norms).values():
            loss = loss + term
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return step, head.subcenters


def peak_memory(name: str, batch: int, dim: int, classes: int, device: str) -> dict:
    """Peak extra memory (MiB) of one training step; call in a fresh process."""
    step, subcenters = make_step(name, batch, dim, classes, device)
    if device.startswith("cuda"):
        import torch

        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_kib() * 1024
        step()
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, 0)
    return {"head": name, "peak_mb": peak / 2**20, "subcenters": subcenters}


def step_times(
    names: list[str], batch: int, dim: int, classes: int, repeats: int, device: str
) -> dict[str, list[float]]:
    """Seconds per step of each head, interleaved round by round so machine load hits all alike."""
    steps = {name: make_step(name, batch, dim, classes, device)[0] for name in names}
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per head after a warm-up (median)")
    parser.add_argument("--heads", default="", help="comma-separated names from HEADS (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "heads.json")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(peak_memory(args.worker, args.batch, args.dim, args.classes, args.device)))
        return

    import torch

    from fr_lightning.heads import HEADS

    names = [n for n in args.heads.split(",") if n] or list(HEADS)
    if "normface" not in names:
        names.insert(0, "normface")  # the reference for the ratios
    results = []
    for name in names:
        cmd = [sys.executable, __file__, "--worker", name, "--batch", str(args.batch), "--dim", str(args.dim),
               "--classes", str(args.classes), "--device", args.device]
        # Fixed mmap threshold: every tensor >= 64 KiB gets its own mapping, returned on free,
        # so the resident set follows live tensor memory (glibc otherwise raises the threshold
        # to 32 MiB after the first free and keeps freed blocks in the heap).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  memory {name}: {results[-1]['peak_mb']:.0f} MiB", file=sys.stderr)
    times = step_times(names, args.batch, args.dim, args.classes, args.repeats, args.device)
    for r in results:
        r["times_ms"] = [1e3 * t for t in times[r["head"]]]
        r["time_ms"] = statistics.median(r["times_ms"])
        r["min_ms"] = min(r["times_ms"])  # least disturbed by other load on a shared machine

    ref = next(r for r in results if r["head"] == "normface")
    for r in results:
        r["time_ratio"] = r["time_ms"] / ref["time_ms"]
        r["mem_ratio"] = r["peak_mb"] / ref["peak_mb"]

    print(f"B={args.batch} D={args.dim} C={args.classes:,} device={args.device} "
          f"threads={torch.get_num_threads()} repeats={args.repeats} (median)")
    print(f"| {'head':<15} | {'step ms':>8} | {'x NormFace':>10} | {'min ms':>7} | "
          f"{'peak MiB':>8} | {'x NormFace':>10} |")
    print(f"|{'-' * 17}|{'-' * 9}:|{'-' * 11}:|{'-' * 8}:|{'-' * 9}:|{'-' * 11}:|")
    for r in results:
        note = f" (K={r['subcenters']})" if r["subcenters"] > 1 else ""
        print(f"| {r['head'] + note:<15} | {r['time_ms']:8.0f} | {r['time_ratio']:10.2f} | {r['min_ms']:7.0f} | "
              f"{r['peak_mb']:8.0f} | {r['mem_ratio']:10.2f} |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {"batch": args.batch, "dim": args.dim, "classes": args.classes, "repeats": args.repeats,
              "device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version(),
              "machine": platform.machine(), "command": " ".join(["python", "benchmarks/heads.py", *sys.argv[1:]]),
              "memory": "peak RSS above the pre-step RSS, fresh process per head" if args.device == "cpu"
              else "torch.cuda.max_memory_allocated above the pre-step allocation"}
    args.out.write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
