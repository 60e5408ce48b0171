"""Time of the IJB-C 1:1 scoring at full size with random features (``verify_templates``' stages).

Sizes are IJB-C's 1:1 protocol: 469,375 images, 23,124 templates, 15,658,489 template pairs of
which 19,557 genuine, 512-d features. Images get random templates and media (about 20 images and
a few media per template), pairs are random template pairs. The timed stages are exactly what
``fr_lightning.eval.ijb.verify_templates`` runs:

1. ``pool``: image -> media -> template pooling (N1 D1) and normalisation;
2. ``pairs``: 15.66 M pair cosines from upper-triangle Gram blocks;
3. ``roc``: the ROC (sort of 15.66 M scores), TAR@FAR table and AUC.

The process is limited to ``--threads`` BLAS / OpenMP threads (default 2). Load average is
recorded because the machine may be shared; so is each stage's process CPU time (all threads),
which bounds the wall time the stage needs on an idle machine (wall <= CPU time, since no stage
waits on anything but the CPU).

    python benchmarks/ijb_scoring.py                  # float64 (default precision)
    python benchmarks/ijb_scoring.py --dtype float32  # faster Gram blocks, scores within ~1e-6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=469_375)
    parser.add_argument("--templates", type=int, default=23_124)
    parser.add_argument("--pairs", type=int, default=15_658_489)
    parser.add_argument("--genuine", type=int, default=19_557)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ijb_scoring.json"), help="results JSON ('' = do not write)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from fr_lightning.eval.ijb.protocol import IJB_FARS, insightface_roc, pool_templates, tar_table, template_pair_scores

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    templates = np.r_[np.arange(args.templates), rng.integers(0, args.templates, args.images - args.templates)]
    medias = templates * 8 + rng.integers(0, 8, args.images)
    faceness = rng.uniform(0.5, 1.0, args.images).astype(np.float32)
    features = np.empty((args.images, args.dim), np.float32)
    for a in range(0, args.images, 50_000):
        features[a : a + 50_000] = rng.standard_normal((min(50_000, args.images - a), args.dim), dtype=np.float32)
    t1 = rng.integers(0, args.templates, args.pairs)
    t2 = rng.integers(0, args.templates, args.pairs)
    labels = np.zeros(args.pairs, np.int64)
    labels[rng.choice(args.pairs, args.genuine, replace=False)] = 1
    setup_s = time.perf_counter() - t0

    load_before = os.getloadavg()
    times, cpu = {}, {}

    def stamp(name: str, t: float, c: float) -> None:
        times[name], cpu[name] = time.perf_counter() - t, time.process_time() - c

    t, c = time.perf_counter(), time.process_time()
    tf, tids = pool_templates(features, faceness, templates, medias, True, True)
    stamp("pool", t, c)
    t, c = time.perf_counter(), time.process_time()
    scores = template_pair_scores(tf, tids, t1, t2, dtype=np.dtype(args.dtype))
    stamp("pairs", t, c)
    t, c = time.perf_counter(), time.process_time()
    fpr, tpr, _ = insightface_roc(scores, labels)
    table = tar_table(fpr, tpr, IJB_FARS)
    table["auc"] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    stamp("roc", t, c)
    times["total"] = times["pool"] + times["pairs"] + times["roc"]
    cpu["total"] = cpu["pool"] + cpu["pairs"] + cpu["roc"]
    load_after = os.getloadavg()

    check = rng.choice(args.pairs, 1000, replace=False)
    ref = np.einsum("nd,nd->n", tf[t1[check]], tf[t2[check]])
    result = {
        "benchmark": "ijb_scoring",
        "command": "python benchmarks/ijb_scoring.py" + (f" --dtype {args.dtype}" if args.dtype != "float64" else ""),
        "sizes": {"images": args.images, "templates": args.templates, "pairs": args.pairs, "genuine": args.genuine, "dim": args.dim},
        "dtype": args.dtype,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "setup_seconds_untimed": round(setup_s, 2),
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "max_abs_score_error_vs_float64_einsum_1000_pairs": float(np.abs(scores[check] - ref).max()),
        "metrics_random_features": table,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        out = Path(args.out)
        existing = json.loads(out.read_text()) if out.is_file() else {}
        runs = existing.get("runs", []) if isinstance(existing, dict) else []
        runs = [r for r in runs if r.get("dtype") != args.dtype] + [result]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "ijb_scoring", "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
