"""Noisy-label co-teaching (docs/methods.md) vs plain ArcFace on the synthetic faces: same network, data, schedule and budget.

    python -m experiments.noisy                    # 4 noise settings x 3 variants x 3 seeds
    python -m experiments.noisy --quick            # smoke run: sym40, baseline and ct-batch, tiny data, seed 0

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
against the clean labels. Results: `experiments/out/noisy.{json,md}` (`noisy-quick.*` for `--quick`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.common import OUT, ROOT, budget_args, callbacks_arg, command, quick_budget, run_fit, save
from experiments.preset_study import table, wall_line
from experiments.preset_study import flow

#: name -> (kind, rate, forget rate τ)
NOISE: dict[str, tuple[str, float, float]] = {
    "sym20": ("symmetric", 0.2, 0.2),
    "sym40": ("symmetric", 0.4, 0.4),
    "sym60": ("symmetric", 0.6, 0.6),
    "pair40": ("pairflip", 0.4, 0.2),
}
VARIANTS = ["baseline", "ct-batch", "ct-epoch"]
QUICK_VARIANTS = ["baseline", "ct-batch"]


def run_args(variant: str, noise: str, ramp: int) -> list[str]:
    """The noise and callbacks overrides of one (variant, noise) cell."""
    kind, rate, tau = NOISE[noise]
    args = [f"--data.init_args.label_noise={flow({'kind': kind, 'rate': rate, 'seed': 0})}"]
    if variant == "baseline":
        return [*args, callbacks_arg([])]
    init = {"forget_rate": tau, "ramp": ramp, "ramp_unit": "step", "mode": variant.split("-")[1]}
    return [*args, callbacks_arg([{"class_path": "fr_lightning.methods.CoTeaching", "init_args": init}])]


def parse(argv: list[str] | None) -> argparse.Namespace:
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
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: sym40, baseline and ct-batch, 1 epoch of 6 identities × 4, ramp 2, seed 0"
    )
    args = parser.parse_args(argv)
    if args.quick:
        extra: dict[str, Any] = {"ramp": 2}
        if args.noise == list(NOISE):
            extra["noise"] = ["sym40"]
        if args.variants == VARIANTS:
            extra["variants"] = QUICK_VARIANTS
        quick_budget(args, **extra)
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    recipe = ["--config", str(ROOT / "recipes" / "coteaching.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size)
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-r{args.ramp}-mda"
    results: dict[str, list[dict[str, Any]]] = {f"{n}/{v}": [] for n in args.noise for v in args.variants}
    for seed in args.seeds:  # seed-major: every cell of a seed is done before the next seed
        for noise in args.noise:
            for variant in args.variants:
                cell = [*recipe, *budget, *run_args(variant, noise, args.ramp)]
                results[f"{noise}/{variant}"].append(run_fit(f"noisy-{noise}-{variant}-{tag}", cell, seed, args.out_dir))

    cols = {
        "synth-lfw acc": "val/synth-lfw/acc",
        "selection precision": "train/coteaching/precision",
        "selection recall": "train/coteaching/recall",
    }
    lines = [
        f"Command: `{command('noisy', args)}`",
        "",
        f"Clean-pair verification accuracy and selection quality of the last epoch (%), mean ± std over seeds {args.seeds}"
        " (baseline rows select everything: precision = 1 − noise rate, shown n/a):",
        "",
        *table(results, cols),
        "",
        wall_line(results),
    ]
    save("noisy-quick" if args.quick else "noisy", results, "\n".join(lines), args.out_dir)
    return results


if __name__ == "__main__":
    main()
