"""Search-Softmax (head + LossSearch) against ArcFace and CosFace on the synthetic faces.

    python -m experiments.search_softmax_study             # 3 heads x 3 seeds (the reported study)
    python -m experiments.search_softmax_study --quick     # smoke run: tiny data, one seed, seconds

Same network (`recipes/arcface.yaml`'s iResNet at width 1/4), data, images, steps, schedule and
logit scale (s = 32, the recipe's and the Search-Softmax authors') for every variant:

* ``arcface`` — `configs/heads/arcface.yaml` (m = 0.5);
* ``cosface`` — `configs/heads/cosface.yaml` (m = 0.4);
* ``search-softmax`` — `configs/heads/search-softmax.yaml` (a = −1 until the search starts) plus
  `LossSearch`: 4 candidates per policy update, warm-up and candidate length scaled to this
  budget (``--warmup-epochs``, ``--candidate-epochs``). Its reward is the accuracy on a reward
  set of its own (``synth-reward``, held-out identities of another seed), never a reported set.

Reported: synth-lfw and synth-cfpfp accuracy (%), mean ± std over seeds, and the paired gain of
search-softmax over each baseline. Results: ``experiments/out/search_softmax.{json,md}``.
Prints its wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from experiments.preset_study import OUT, ROOT, data_args, fit, gain_table, pairs_entry, save, table, trainer_args

VARIANTS = ["arcface", "cosface", "search-softmax"]
COLUMNS = {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"}


def run_args(variant: str, args: argparse.Namespace) -> list[str]:
    """`fr fit` arguments of one variant."""
    val = [
        pairs_entry("synth-lfw", "standard", args.pairs, 0, args.preset),
        pairs_entry("synth-cfpfp", "cross_pose", args.pairs, 1, args.preset),
    ]
    callbacks: list[dict[str, object]] = []
    if variant == "search-softmax":
        reward = pairs_entry("synth-reward", "standard", args.reward_pairs, 7, args.preset)
        init = {
            "candidates": args.candidates,
            "warmup_epochs": args.warmup_epochs,
            "candidate_epochs": args.candidate_epochs,
            "reward_set": reward,
        }
        callbacks.append({"class_path": "fr_lightning.callbacks.LossSearch", "init_args": init})
    return [
        "--config", str(ROOT / "recipes" / "arcface.yaml"),
        "--config", str(ROOT / "configs" / "heads" / f"{variant}.yaml"),
        f"--model.init_args.head.init_args.s={args.scale}",
        *data_args(args.preset, args.identities, args.per_identity, val, args.batch_size, image_size=args.image_size),
        *trainer_args(args.epochs, callbacks),
    ]  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--identities", type=int, default=240)
    parser.add_argument("--per-identity", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--reward-pairs", type=int, default=300)
    parser.add_argument("--scale", type=float, default=32.0, help="logit scale s of every head")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--candidate-epochs", type=float, default=0.25)
    parser.add_argument("--preset", default=None, help="difficulty preset of the synthetic faces (default: none)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 8 identities x 4, 20 pairs (20 reward pairs), 32 px, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.identities, args.per_identity = [0], 1, 8, 4
        args.batch_size, args.pairs, args.reward_pairs, args.image_size = 8, 20, 20, 32
        args.candidates, args.warmup_epochs, args.candidate_epochs = 2, 0.0, 0.25
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    args = parse(argv)
    start = time.time()
    tag = (
        f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-px{args.image_size}-p{args.pairs}"
        f"-s{args.scale:g}-c{args.candidates}w{args.warmup_epochs:g}k{args.candidate_epochs:g}r{args.reward_pairs}"
        + (f"-{args.preset}" if args.preset else "")
    )
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # seed-major: every variant of a seed before the next seed
        for variant in args.variants:
            metrics = fit(f"search_softmax-{variant}-{tag}", run_args(variant, args), seed, args.out_dir)
            results[variant].append(metrics)
            mu = f", mu0 {metrics['search/mu/0']:+.3f}" if "search/mu/0" in metrics else ""
            print(f"  {variant} seed {seed}: synth-lfw {100 * metrics.get('val/synth-lfw/acc', float('nan')):.2f} %{mu} ({metrics['wall_s']:.0f} s)", flush=True)
    lines = [
        f"Budget {tag}, seeds {args.seeds}. Verification accuracy (%), mean ± std over seeds:",
        "",
        *table(results, COLUMNS),
    ]
    if "search-softmax" in results:
        for base in ("arcface", "cosface"):
            if base in results:
                pair = {base: results[base], "search-softmax": results["search-softmax"]}
                lines += ["", f"Gain of search-softmax over {base} (points, paired by seed; mean ± std, worst seed):", ""]
                lines += gain_table(pair, COLUMNS, baseline=base)
        mus = [r["search/mu/0"] for r in results["search-softmax"] if "search/mu/0" in r]
        if mus:
            lines += ["", "Final policy mean μ₀ per seed: " + ", ".join(f"{m:+.3f}" for m in mus)]
    wall = time.time() - start
    lines += ["", "Mean wall time per run: " + ", ".join(f"{v} {sum(r['wall_s'] for r in rs) / len(rs):.0f} s" for v, rs in results.items())]
    study = "search_softmax" if not args.quick else "search_softmax-quick"
    save(study, args.out_dir, results, lines)
    print(f"wall time {wall:.0f} s")
    return results


if __name__ == "__main__":
    main()
