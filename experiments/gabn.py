"""GABN (a reconstruction; docs/methods.md, "GABN racial de-bias") compared on the synthetic faces: same backbone, data, schedule and budget.

    python -m experiments.gabn                     # 4 variants x 3 seeds
    python -m experiments.gabn --quick             # smoke run: baseline and gabn, tiny data, seed 0

The synthetic training mix is skewed over 4 demographic groups (55/25/12/8 % of identities,
groups differ in skin tone range and feature contrast). Variants, all `recipes/gabn.yaml`
(iResNet at 56 px, ArcFace) with only `trainer.callbacks` changed:

* `baseline` — plain training (no GABN);
* `gabn` — adversarial attention balance + top-N erasing;
* `adversarial` — `GABN(erase=false)`;
* `erasing` — `GABN(adversarial=false)`.

The warm-up (λ ramp, erasing starts after it) is `--warmup-frac` of all optimizer steps.
Every run is evaluated on `synth-lfw` and on one verification set per group, `synth-rfw-g0..g3`
(same protocol, identities of that group only). Reported: per-group accuracy, their mean, STD
and SER = (100 − min)/(100 − max), and synth-lfw accuracy; mean ± population std over seeds.
Results: `experiments/out/gabn.{json,md}` (`gabn-quick.*` for `--quick`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from experiments.common import OUT, ROOT, budget_args, callbacks_arg, command, quick_budget, run_fit, save
from experiments.preset_study import table, wall_line

#: variant -> GABN init args (None: no GABN).
VARIANTS: dict[str, dict[str, bool] | None] = {
    "baseline": None,
    "gabn": {"adversarial": True, "erase": True},
    "adversarial": {"adversarial": True, "erase": False},
    "erasing": {"adversarial": False, "erase": True},
}
QUICK_VARIANTS = ["baseline", "gabn"]
GROUP_SETS = [f"synth-rfw-g{g}" for g in range(4)]


def callbacks(variant: str, warmup: int) -> list[dict[str, Any]]:
    """The `trainer.callbacks` of one variant."""
    init = VARIANTS[variant]
    if init is None:
        return []
    return [{"class_path": "fr_lightning.methods.GABN", "init_args": {**init, "top_n": 1, "warmup": warmup}}]


def ser_cell(runs: list[dict[str, float]]) -> str:
    vals = np.array([r["val/fairness/ser"] for r in runs if "val/fairness/ser" in r])
    return f"{vals.mean():.3f} ± {vals.std():.3f}" if len(vals) else "n/a"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs per verification set")
    parser.add_argument("--warmup-frac", type=float, default=0.33)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke run: baseline and gabn, 1 epoch of 6 identities × 4, 40 pairs, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        quick_budget(args, **({"variants": QUICK_VARIANTS} if args.variants == list(VARIANTS) else {}))
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    steps = args.epochs * ((args.identities * args.per_identity) // args.batch_size)
    warmup = max(1, int(args.warmup_frac * steps))
    recipe = ["--config", str(ROOT / "recipes" / "gabn.yaml")]
    budget = budget_args(
        args.epochs, args.identities, args.per_identity, args.pairs, sets=("synth-lfw", *GROUP_SETS), batch_size=args.batch_size
    )
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-w{warmup}"
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # seed-major: every variant of a seed is done before the next seed
        for variant in args.variants:
            run = [*recipe, *budget, callbacks_arg(callbacks(variant, warmup))]
            results[variant].append(run_fit(f"gabn-{variant}-{tag}", run, seed, args.out_dir))

    acc_cols = {f"g{g}": f"val/synth-rfw-g{g}/acc" for g in range(4)}
    acc_cols |= {"group mean": "val/fairness/mean", "STD": "val/fairness/std", "synth-lfw": "val/synth-lfw/acc"}
    lines = [
        f"Command: `{command('gabn', args)}` (warm-up {warmup} of {steps} steps)",
        "",
        f"Verification accuracy per group and overall (%), STD in points, mean ± std over seeds {args.seeds}:",
        "",
        *table(results, acc_cols),
        "",
        "SER = (100 − min group acc) / (100 − max group acc):",
        "",
        "| variant | SER |",
        "|---|---|",
        *[f"| {v} | {ser_cell(runs)} |" for v, runs in results.items()],
    ]
    disc = {v: [r["train/gabn/disc_acc"] for r in runs if "train/gabn/disc_acc" in r] for v, runs in results.items()}
    if any(disc.values()):
        lines += ["", "Discriminator accuracy on the last step (chance = 25 %): " + ", ".join(
            f"{v} {100 * np.mean(d):.1f} %" for v, d in disc.items() if d
        )]
    lines += ["", wall_line(results)]
    save("gabn-quick" if args.quick else "gabn", results, "\n".join(lines), args.out_dir)
    return results


if __name__ == "__main__":
    main()
