"""Noisy-label co-teaching (docs/methods.md) vs plain ArcFace on the synthetic faces: same network, data, schedule and budget.

    python experiments/noisy.py                    # 4 noise settings x 3 variants x 3 seeds
    python experiments/noisy.py --epochs 1 --identities 16 --per-identity 4 --batch-size 16 --pairs 40 --ramp 2 --seeds 0 --noise sym40   # smoke check

Noise settings (injected by `FaceDataModule(label_noise=...)`, seed 0, so every variant and run
seed sees the same corrupted labels): `sym20`, `sym40`, `sym60` (symmetric, 20/40/60 %) and
`pair40` (40 % pair-flip). Variants, all `recipes/coteaching.yaml` with only the callbacks and
the noise changed:

* `baseline` — plain ArcFace on the noisy labels (no callbacks);
* `ct-batch` — `CoTeaching(mode=batch)`: rank within each batch;
* `ct-epoch` — `CoTeaching(mode=epoch)`: rank the whole set once per epoch.

Forget rate τ = the noise rate (τ/2 for pair-flip), on the MDA authors' schedule over `--ramp`
steps: R = linspace(0, τ, T_k)[s + 1] at 0-based step s, so τ from step T_k − 2 on (run tags end
in `-mda`; earlier runs used a linear ramp from zero).
"Same budget" = same images, steps and epochs (co-teaching trains a second network and runs a
no-grad scoring pass, so it costs more wall time; the table reports it). Metrics: clean-pair
`synth-lfw` verification accuracy and the epoch-mean precision / recall of the selected set
against the clean labels. Results: `experiments/out/noisy.{json,md}`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import ROOT, budget_args, run_fit, save, table  # noqa: E402

#: name -> (kind, rate, forget rate τ)
NOISE: dict[str, tuple[str, float, float]] = {
    "sym20": ("symmetric", 0.2, 0.2),
    "sym40": ("symmetric", 0.4, 0.4),
    "sym60": ("symmetric", 0.6, 0.6),
    "pair40": ("pairflip", 0.4, 0.2),
}
VARIANTS = ["baseline", "ct-batch", "ct-epoch"]


def run_args(variant: str, noise: str, ramp: int) -> list[str]:
    """The noise and callbacks overrides of one (variant, noise) cell."""
    kind, rate, tau = NOISE[noise]
    args = [f"--data.init_args.label_noise={{kind: {kind}, rate: {rate}, seed: 0}}"]
    if variant == "baseline":
        return [*args, "--trainer.callbacks=[]"]
    mode = variant.split("-")[1]
    method = (
        "{class_path: fr_lightning.methods.CoTeaching, init_args: "
        f"{{forget_rate: {tau}, ramp: {ramp}, ramp_unit: step, mode: {mode}}}}}"
    )
    return [*args, f"--trainer.callbacks=[{method}]"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", nargs="+", default=list(NOISE), choices=list(NOISE))
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs of synth-lfw")
    parser.add_argument("--ramp", type=int, default=100, help="forget-rate ramp length in steps")
    args = parser.parse_args()
    recipe = ["--config", str(ROOT / "recipes" / "coteaching.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size)
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-r{args.ramp}-mda"
    results: dict[str, list[dict[str, float]]] = {f"{n}/{v}": [] for n in args.noise for v in args.variants}
    for seed in args.seeds:  # seed-major: every cell of a seed is done before the next seed
        for noise in args.noise:
            for variant in args.variants:
                cell = [*recipe, *budget, *run_args(variant, noise, args.ramp)]
                results[f"{noise}/{variant}"].append(run_fit(f"noisy-{noise}-{variant}-{tag}", cell, seed))

    cols = {
        "synth-lfw acc": "val/synth-lfw/acc",
        "selection precision": "train/coteaching/precision",
        "selection recall": "train/coteaching/recall",
    }
    cmd = "python experiments/noisy.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(str(x) for x in v) if isinstance(v, list) else v}" for k, v in vars(args).items()
    )
    walls = {v: np.mean([r["wall_s"] for r in runs]) for v, runs in results.items() if runs}
    lines = [
        f"Command: `{cmd}`",
        "",
        f"Clean-pair verification accuracy and selection quality of the last epoch (%), mean ± std over seeds {args.seeds}"
        " (baseline rows select everything: precision = 1 − noise rate, shown n/a):",
        "",
        table(results, cols),
        "",
        "Mean wall time per run: " + ", ".join(f"{v} {w:.0f} s" for v, w in walls.items()),
    ]
    save("noisy", results, "\n".join(lines))


if __name__ == "__main__":
    main()
