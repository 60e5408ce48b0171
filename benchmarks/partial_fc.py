"""Time and peak memory of one classifier training step: full FC vs Partial FC (one CPU process).

Command:

    python benchmarks/partial_fc.py                                  # C = 1e4, 1e5, 1e6; D = 512; B = 512
    python benchmarks/partial_fc.py --classes 10000 100000 --repeats 5

The step is the classifier part of a training step: cosine of B embeddings against the centres
(all of them, or Partial FC's sampled r = 0.1 with every positive kept), ArcFace margin, the
classifier's cross-entropy, backward into embeddings and centres, and an SGD step (momentum 0.9,
weight decay 5e-4) on the centres; gradients are set to None between steps, as Lightning does.
Three classifiers: full FC; Partial FC with a dense centre gradient (``torch.optim.SGD``);
Partial FC with a row-sparse centre gradient (``sparse_grad=True``, stepped by ``RowSparseSGD``,
which is what ``configs/scale/partial-fc.yaml`` uses).

Each (classifier, C) runs in a fresh process: one warm-up step, then ``--repeats`` timed steps
(median reported). Memory = the process's peak resident set (``ru_maxrss``) above its resident
size before the centres were created, so it counts centres, their gradient and momentum and the
step's temporaries. glibc's mmap threshold is pinned at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so
freed tensors go back to the OS and the resident set follows live memory. "state" is the resident
memory after the last step (centres + their gradient + momentum). The child's address space is capped (``--max-gb``)
so an oversized configuration fails alone ("OOM") instead of pressuring a shared machine.

Results: a table on stdout and ``benchmarks/results/partial_fc.json``.
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


#: Configurations: full FC; Partial FC with a dense centre gradient (torch SGD); Partial FC with
#: a row-sparse centre gradient stepped by RowSparseSGD (``PartialFC(sparse_grad=True)``).
KINDS: dict[str, str] = {"full": "full FC", "partial": "PFC dense grad", "sparse": "PFC row-sparse"}


def _rss() -> int:
    """Current resident set size in bytes (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def child(kind: str, classes: int, dim: int, batch: int, rate: float, repeats: int, threads: int) -> dict:
    """One configuration, in this (fresh) process."""
    import torch

    sys.path.insert(0, str(ROOT))
    from fr_lightning.classifiers import FullFC, PartialFC
    from fr_lightning.heads import ArcFace
    from fr_lightning.optim import RowSparseSGD

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = _rss()
    if kind == "full":
        fc = FullFC(dim, classes)
    else:
        fc = PartialFC(dim, classes, sample_rate=rate, sparse_grad=kind == "sparse")
    head = ArcFace(s=64.0, m=0.5)
    # What FaceRecognitionModule.configure_optimizers builds: SGD, row-wise for sparse centre gradients.
    opt_cls = RowSparseSGD if kind == "sparse" else torch.optim.SGD
    opt = opt_cls(fc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    embeddings = torch.randn(batch, dim).requires_grad_()
    labels = torch.randint(0, classes, (batch,))

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        embeddings.grad = None
        cosine, target = fc(embeddings, labels)
        logits = head(cosine, target)
        loss = fc.cross_entropy(logits, target).mean()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    step()  # warm-up: allocates the momentum
    times = [step() for _ in range(repeats)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {
        "classifier": kind, "classes": classes, "dim": dim, "batch": batch,
        "sample_rate": 1.0 if kind == "full" else rate,
        "ms": 1000 * statistics.median(times), "ms_all": [1000 * t for t in times],
        "peak_mb": peak / 2**20, "state_mb": (_rss() - base) / 2**20,
    }


def run(kind: str, classes: int, args: argparse.Namespace) -> dict:
    """Run one configuration in a subprocess with a capped address space."""
    cmd = [
        sys.executable, __file__, "--child", kind, "--classes", str(classes), "--dim", str(args.dim),
        "--batch", str(args.batch), "--rate", str(args.rate), "--repeats", str(args.repeats), "--threads", str(args.threads),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-gb", type=float, default=18.0)
    parser.add_argument("--child", choices=list(KINDS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "partial_fc.json")
    args = parser.parse_args()
    if args.child:
        c = args.classes[0]
        print(json.dumps(child(args.child, c, args.dim, args.batch, args.rate, args.repeats, args.threads)))
        return

    rows = []
    print(f"{'C':>9} | " + " | ".join(f"{KINDS[k]:>22}" for k in KINDS) + " | time x / mem x vs full FC")
    for classes in args.classes:
        res = {kind: run(kind, classes, args) for kind in KINDS}
        rows += list(res.values())
        if any("error" in r for r in res.values()):
            print(f"{classes:>9} | " + " ".join(r.get("error", "ok") for r in res.values()))
            continue
        full = res["full"]
        cells = [f"{r['ms']:>9.0f} ms {r['peak_mb']:>7.0f} MiB" for r in res.values()]
        ratios = [f"{KINDS[k]} {res[k]['ms'] / full['ms']:.2f} / {res[k]['peak_mb'] / full['peak_mb']:.2f}" for k in KINDS if k != "full"]
        print(f"{classes:>9} | " + " | ".join(cells) + " | " + ", ".join(ratios))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), "threads": args.threads}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
