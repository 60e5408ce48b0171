"""GABN (a reconstruction; docs/methods.md, "GABN racial de-bias") compared on the synthetic faces: same backbone, data, schedule and budget.

    python experiments/gabn.py                     # 4 variants x 3 seeds
    python experiments/gabn.py --epochs 1 --identities 20 --per-identity 8 --batch-size 32 --pairs 100 --seeds 0   # smoke check

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
Results: `experiments/out/gabn.{json,md}`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import ROOT, budget_args, run_fit, save, table  # noqa: E402

VARIANTS: dict[str, str] = {
    "baseline": "",
    "gabn": "adversarial: true, erase: true",
    "adversarial": "adversarial: true, erase: false",
    "erasing": "adversarial: false, erase: true",
}
GROUP_SETS = [f"synth-rfw-g{g}" for g in range(4)]


def callbacks_arg(variant: str, warmup: int) -> str:
    if not VARIANTS[variant]:
        return "--trainer.callbacks=[]"
    return (
        "--trainer.callbacks=[{class_path: fr_lightning.methods.GABN, init_args: "
        f"{{{VARIANTS[variant]}, top_n: 1, warmup: {warmup}}}}}]"
    )


def ser_cell(runs: list[dict[str, float]]) -> str:
    vals = np.array([r["val/fairness/ser"] for r in runs if "val/fairness/ser" in r])
    return f"{vals.mean():.3f} ± {vals.std():.3f}" if len(vals) else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs per verification set")
    parser.add_argument("--warmup-frac", type=float, default=0.33)
    args = parser.parse_args()
    steps = args.epochs * ((args.identities * args.per_identity) // args.batch_size)
    warmup = max(1, int(args.warmup_frac * steps))
    recipe = ["--config", str(ROOT / "recipes" / "gabn.yaml")]
    budget = budget_args(
        args.epochs, args.identities, args.per_identity, args.pairs, sets=("synth-lfw", *GROUP_SETS), batch_size=args.batch_size
    )
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-w{warmup}"
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # seed-major: every variant of a seed is done before the next seed
        for variant in args.variants:
            results[variant].append(run_fit(f"gabn-{variant}-{tag}", [*recipe, *budget, callbacks_arg(variant, warmup)], seed))

    acc_cols = {f"g{g}": f"val/synth-rfw-g{g}/acc" for g in range(4)}
    acc_cols |= {"group mean": "val/fairness/mean", "STD": "val/fairness/std", "synth-lfw": "val/synth-lfw/acc"}
    cmd = "python experiments/gabn.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(str(x) for x in v) if isinstance(v, list) else v}" for k, v in vars(args).items()
    )
    lines = [
        f"Command: `{cmd}` (warm-up {warmup} of {steps} steps)",
        "",
        f"Verification accuracy per group and overall (%), STD in points, mean ± std over seeds {args.seeds}:",
        "",
        table(results, acc_cols),
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
    walls = {v: np.mean([r["wall_s"] for r in runs]) for v, runs in results.items() if runs}
    lines += ["", "Mean wall time per run: " + ", ".join(f"{v} {w:.0f} s" for v, w in walls.items())]
    save("gabn", results, "\n".join(lines))


if __name__ == "__main__":
    main()
