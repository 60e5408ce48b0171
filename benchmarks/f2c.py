"""Time and peak memory of one classifier step: full FC vs Partial FC vs F²C (one CPU process each).

Command:

    OMP_NUM_THREADS=1 python benchmarks/f2c.py --threads 1        # C = 1e4, 1e5, 1e6; D = 512; B = 512
    python benchmarks/f2c.py --quick --out /tmp/f2c.json          # tiny sizes, one C (the smoke test)

Full FC and Partial FC (r = 0.1, dense and row-sparse centre gradient) are measured exactly as
``benchmarks/partial_fc.py`` does (its ``child`` is reused): cosines, ArcFace margin, the
classifier's cross-entropy, backward, SGD step on the centres. F²C's step is the classifier part
of an F²C training step: both passes over a pool of ``Q = pool_fraction * C`` slots (LRU
assignment of the batch's gallery labels, two score matrices per pass, the rolled-back first
pass and the kept second one), the same ArcFace margin, F²C's loss and its backward into the
embeddings. F²C has no centres, so there is no optimizer state; the gallery features are
given (random unit vectors): F²C's extra no-grad gallery forward of the backbone and the EMA
update are **not** part of this number (they scale with the backbone, not with C).

Each (classifier, C) runs in a fresh process with a capped address space (``--max-gb``), one
warm-up step then ``--repeats`` timed steps (median). Memory is the peak resident set above the
resident size before the classifier was built (see ``benchmarks/partial_fc.py``).

Results: a table on stdout, ``--out`` (JSON, default ``benchmarks/results/f2c.json``) and the
same table as Markdown next to it (``.md``).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import partial_fc as pfc_bench  # noqa: E402  (the full FC / Partial FC step, unchanged)

KINDS: dict[str, str] = {**pfc_bench.KINDS, "f2c": "F2C pool"}


def f2c_child(classes: int, dim: int, batch: int, fraction: float, repeats: int, threads: int) -> dict:
    """One F²C configuration, in this (fresh) process."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    from fr_lightning.classifiers import F2C
    from fr_lightning.criterion import Criterion
    from fr_lightning.heads import ArcFace

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = pfc_bench._rss()
    fc = F2C(dim, classes, pool_fraction=fraction).train()
    criterion = Criterion(fc, ArcFace(s=64.0, m=0.5))
    embeddings = torch.randn(batch, dim).requires_grad_()
    # Identity pairs then instances (the dual loaders' layout): half the rows recur in x and y.
    ids = torch.randint(0, classes, (batch // 4,))
    labels = torch.cat([ids, torch.randint(0, classes, (batch // 2 - ids.numel(),))])
    labels = torch.cat([labels, ids, torch.randint(0, classes, (batch - labels.numel() - ids.numel(),))])

    def step() -> float:
        gallery = F.normalize(torch.randn(batch, dim), dim=1)
        start = time.perf_counter()
        embeddings.grad = None
        fc._staged = (gallery, labels)  # what F2C.prepare_batch stages each step
        loss = criterion(embeddings, labels).per_sample_loss.mean()
        loss.backward()
        return time.perf_counter() - start

    step()
    times = [step() for _ in range(repeats)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {
        "classifier": "f2c", "classes": classes, "dim": dim, "batch": batch, "pool": fc.capacity,
        "ms": 1000 * statistics.median(times), "ms_all": [1000 * t for t in times],
        "peak_mb": peak / 2**20, "state_mb": (pfc_bench._rss() - base) / 2**20,
    }


def run(kind: str, classes: int, args: argparse.Namespace) -> dict:
    """One configuration in a subprocess with a capped address space."""
    cmd = [
        sys.executable, __file__, "--child", kind, "--classes", str(classes), "--dim", str(args.dim), "--batch", str(args.batch),
        "--rate", str(args.rate), "--pool-fraction", str(args.pool_fraction), "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    limit = int(args.max_gb * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, preexec_fn=cap)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {"classifier": kind, "classes": classes, "error": f"failed (address space capped at {args.max_gb} GiB?)"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], classes: list[int]) -> list[str]:
    """Markdown table: ms / MiB per classifier and C, and F²C's ratios to full FC and Partial FC."""
    lines = ["| C | " + " | ".join(KINDS.values()) + " | F2C vs full FC (time / mem) | F2C vs PFC row-sparse |",
             "|---" * (len(KINDS) + 3) + "|"]
    for c in classes:
        res = {r["classifier"]: r for r in rows if r["classes"] == c}
        cells = [f"{res[k]['ms']:.0f} ms, {res[k]['peak_mb']:.0f} MiB" if "ms" in res.get(k, {}) else res.get(k, {}).get("error", "-") for k in KINDS]
        ratio = []
        for other in ("full", "sparse"):
            a, b = res.get("f2c", {}), res.get(other, {})
            ok = "ms" in a and "ms" in b and b["ms"] > 0 and b["peak_mb"] > 0
            ratio.append(f"{a['ms'] / b['ms']:.2f} / {a['peak_mb'] / b['peak_mb']:.2f}" if ok else "-")
        lines.append(f"| {c:,} | " + " | ".join(cells) + " | " + " | ".join(ratio) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rate", type=float, default=0.1, help="Partial FC sample rate")
    parser.add_argument("--pool-fraction", type=float, default=0.1, help="F2C pool slots as a fraction of C (same columns as PFC)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-gb", type=float, default=18.0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: C = 2000; D = 64; B = 64; 2 repeats")
    parser.add_argument("--child", choices=list(KINDS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "f2c.json")
    args = parser.parse_args()
    if args.quick and not args.child:
        args.classes, args.dim, args.batch, args.repeats = [2_000], 64, 64, 2
    if args.child == "f2c":
        print(json.dumps(f2c_child(args.classes[0], args.dim, args.batch, args.pool_fraction, args.repeats, args.threads)))
        return
    if args.child:
        print(json.dumps(pfc_bench.child(args.child, args.classes[0], args.dim, args.batch, args.rate, args.repeats, args.threads)))
        return

    started = time.perf_counter()
    rows = []
    for classes in args.classes:
        for kind in KINDS:
            rows.append(run(kind, classes, args))
            print(f"{kind} C={classes}: {rows[-1].get('ms', rows[-1].get('error')):.6} ms", flush=True)
    lines = table(rows, args.classes)
    print("\n".join(lines))
    wall = time.perf_counter() - started
    meta = {
        "machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), "threads": args.threads,
        "dim": args.dim, "batch": args.batch, "rate": args.rate, "pool_fraction": args.pool_fraction, "quick": args.quick,
        "wall_s": wall, "command": " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    args.out.with_suffix(".md").write_text("\n".join([f"Command: `python {meta['command']}` ({wall:.0f} s wall)", "", *lines]) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
