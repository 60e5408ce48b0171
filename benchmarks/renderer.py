"""Speed of the synthetic face renderer on one CPU core, plus a sample grid and a pixel baseline.

Commands:

    python benchmarks/renderer.py                      # images/s at 112 and 56 px, one thread
    python benchmarks/renderer.py --profile            # ... with time per stage
    python benchmarks/renderer.py --grid grid.png      # 8 identities x 8 samples, to look at
    python benchmarks/renderer.py --pixel-baseline     # verification accuracy of raw-pixel cosine

Results are printed as a table and written to ``benchmarks/results/renderer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fr_lightning.data.synthetic import FaceRenderer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "renderer.json"


def time_renderer(image_size: int, batch: int, repeats: int, profile: bool) -> dict[str, object]:
    """Render ``repeats`` batches of fresh identities and report the best and median speed.

    Args:
        image_size: output side in pixels.
        batch: images per ``render`` call.
        repeats: timed batches (after one warm-up batch that also builds the background banks).
        profile: also time the renderer's stages (parameters, geometry, drawing) separately.

    Returns:
        A JSON-ready dict of the measurements.
    """
    renderer = FaceRenderer(seed=0, image_size=image_size)
    renderer.render(np.arange(batch), np.arange(batch))  # warm-up
    times = []
    for r in range(repeats):
        ids = np.arange(batch) + (r + 1) * batch
        start = time.perf_counter()
        renderer.render(ids, np.arange(batch))
        times.append(time.perf_counter() - start)
    row: dict[str, object] = {
        "image_size": image_size,
        "batch": batch,
        "images_per_s_best": batch / min(times),
        "images_per_s_median": batch / float(np.median(times)),
    }
    if profile:
        stages = {"identity": [], "nuisance": [], "geometry": [], "draw": []}
        for r in range(repeats):
            ids = np.arange(batch) + (r + 1) * batch
            idx = np.arange(batch)
            t0 = time.perf_counter()
            idp = renderer._identity(ids, renderer.group_of(ids))
            t1 = time.perf_counter()
            nup = renderer._nuisance(ids, idx)
            t2 = time.perf_counter()
            geo = renderer._geometry(idp, nup)
            t3 = time.perf_counter()
            renderer._draw_batch(np.empty((batch, image_size, image_size, 3), np.uint8), idp, nup, geo)
            t4 = time.perf_counter()
            for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[name].append(dt)
        row["us_per_image"] = {k: 1e6 * float(np.median(v)) / batch for k, v in stages.items()}
    return row


def save_grid(path: str, image_size: int, nuisance_scale: float, seed: int) -> None:
    """Save an 8 identities × 8 samples PNG grid (upscaled to 112 px cells for small sizes)."""
    renderer = FaceRenderer(seed=seed, image_size=image_size, nuisance_scale=nuisance_scale)
    ids, idx = np.repeat(np.arange(8), 8), np.tile(np.arange(8), 8)
    images = renderer.render(ids, idx).images
    s = image_size
    grid = images.reshape(8, 8, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(8 * s, 8 * s, 3)
    if s < 112:
        grid = cv2.resize(grid, (8 * 112, 8 * 112), interpolation=cv2.INTER_NEAREST)
    if not cv2.imwrite(path, np.ascontiguousarray(grid[..., ::-1])):
        raise OSError(f"could not write {path}")
    print(f"wrote {path}")


def pixel_baseline(image_size: int, pairs: int, nuisance_scale: float) -> dict[str, float]:
    """10-fold verification accuracy of cosine similarity between raw normalised pixels.

    Pairs are built from held-out identities (ids ≥ 10,000,000): half same-identity pairs (two
    different sample indices), half different-identity pairs. ``cross_pose`` pairs a frontal
    image with a profile (|yaw| 55–80°). The threshold is chosen on 9 folds and applied to the
    tenth, as in the insightface protocol.
    """
    renderer = FaceRenderer(seed=0, image_size=image_size, nuisance_scale=nuisance_scale)
    rng = np.random.default_rng(1)
    base, pool = 10_000_000, 600
    a = rng.integers(0, pool, pairs)
    same = np.arange(pairs) % 2 == 0
    b = np.where(same, a, (a + rng.integers(1, pool, pairs)) % pool)
    perm = rng.permutation(pairs)
    a, b, same = a[perm] + base, b[perm] + base, same[perm]

    def embed(ids: np.ndarray, yaw: np.ndarray | None) -> np.ndarray:
        x = renderer.render(ids, rng.integers(0, 10**6, len(ids)), yaw=yaw).images.reshape(len(ids), -1)
        x = x.astype(np.float32) / 127.5 - 1.0
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    out = {}
    for kind in ("standard", "cross_pose"):
        if kind == "standard":
            score = (embed(a, None) * embed(b, None)).sum(1)
        else:
            yaw_b = rng.choice([-1.0, 1.0], pairs) * rng.uniform(55.0, renderer.max_yaw, pairs)
            score = (embed(a, rng.normal(0.0, 5.0, pairs)) * embed(b, yaw_b)).sum(1)
        thresholds = np.quantile(score, np.linspace(0, 1, 201))
        folds = np.array_split(np.arange(pairs), 10)
        accs = []
        for f in folds:
            train = np.setdiff1d(np.arange(pairs), f)
            train_acc = [((score[train] > t) == same[train]).mean() for t in thresholds]
            t = thresholds[int(np.argmax(train_acc))]
            accs.append(((score[f] > t) == same[f]).mean())
        out[kind] = float(np.mean(accs))
    return out


def main() -> None:
    """Parse arguments, run the requested measurements, print a table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 56], help="image sizes to time")
    ap.add_argument("--batch", type=int, default=256, help="images per render call")
    ap.add_argument("--repeats", type=int, default=5, help="timed batches per size")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (1 = single core)")
    ap.add_argument("--profile", action="store_true", help="also time each stage")
    ap.add_argument("--grid", type=str, default=None, help="save a PNG grid of samples here and exit")
    ap.add_argument("--grid-size", type=int, default=112, help="image size of the grid's samples")
    ap.add_argument("--grid-nuisance", type=float, default=1.0, help="nuisance_scale of the grid's samples")
    ap.add_argument("--seed", type=int, default=0, help="renderer seed of the grid")
    ap.add_argument("--pixel-baseline", action="store_true", help="raw-pixel cosine verification accuracy")
    ap.add_argument("--pairs", type=int, default=3000, help="pairs for --pixel-baseline")
    ap.add_argument("--out", type=str, default=str(RESULTS), help="JSON output path")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    if args.grid:
        save_grid(args.grid, args.grid_size, args.grid_nuisance, args.seed)
        return

    rows = [time_renderer(s, args.batch, args.repeats, args.profile) for s in args.sizes]
    print(f"{'image size':>10} {'batch':>6} {'images/s (best)':>16} {'images/s (median)':>18}")
    for r in rows:
        print(
            f"{r['image_size']:>10} {r['batch']:>6} {r['images_per_s_best']:>16.0f} {r['images_per_s_median']:>18.0f}"
        )
        if "us_per_image" in r:
            stages = ", ".join(f"{k} {v:.0f} us" for k, v in r["us_per_image"].items())
            print(f"{'':>10} per image: {stages}")
    result: dict[str, object] = {
        "benchmark": "renderer",
        "command": "python " + " ".join(sys.argv),
        "opencv_threads": args.threads,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "results": rows,
    }
    if args.pixel_baseline:
        baseline = {str(s): pixel_baseline(s, args.pairs, 1.0) for s in args.sizes}
        result["pixel_cosine_accuracy"] = baseline
        for s, accs in baseline.items():
            print(f"raw-pixel cosine, {s} px: " + ", ".join(f"{k} {v:.3f}" for k, v in accs.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
