"""Co-teaching on the `noise` preset with the controls that attribute its gain (protocol v2).

    python -m experiments.coteaching_study                      # the reported study (claims `coteaching*`)
    python -m experiments.coteaching_study --quick              # smoke run: tiny data, seconds, not reported
    python -m experiments.coteaching_study --calibrate          # the preset's calibration: baseline curve, seeds 101-105

Every variant trains ``recipes/arcface.yaml``'s network on the `noise` preset with 40 % symmetric
label noise (:data:`BUDGET`), validated on clean synth-lfw pairs every 2 epochs (the curve shows
memorisation). Variants:

- ``baseline``: plain training;
- ``coteaching``: ``CoTeaching`` as the fragment ships it (forget rate 0.4 ramped over 5 epochs,
  agreement weight 1);
- ``selection-only``: the same with ``agreement_weight: 0`` (two peers, small-loss selection only);
- ``agreement-only``: the same with ``forget_rate: 0`` (two peers, agreement term, no selection);
- ``baseline-2x``: plain training for twice the epochs, about co-teaching's compute (two networks).

Every study seed draws the training faces, the label-noise draw and the evaluation pairs
(:mod:`experiments.seeds`). ``--calibrate`` trains the baseline only, for :data:`CALIBRATION_EPOCHS`,
on the calibration seeds, and prints its clean-validation curve (the preset is calibrated when the
curve rises, then falls: memorisation shows). Run files go to ``experiments/out/v2/coteaching/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.claims import CLAIMS
from experiments.preset_study import CURVE, flow, pairs_entry
from experiments.seeds import CALIBRATION_SEEDS, data_seed_args
from experiments.study import ROOT, run_study
from experiments.study_cli import budget_overrides, study_parser, study_plan, synthetic_train

#: the claims that read this study's runs; the first names the folder and the command
STUDY_CLAIMS = ("coteaching", "coteaching-selection", "coteaching-agreement", "coteaching-compute")
BUDGET = {"identities": 150, "per_identity": 20, "epochs": 10, "batch_size": 64, "image_size": 32, "pairs": 1000}
QUICK = {"identities": 8, "per_identity": 4, "epochs": 2, "batch_size": 16, "image_size": 32, "pairs": 40}
CALIBRATION_EPOCHS = 12
NOISE = 0.4


def _coteaching(**init: Any) -> list[dict[str, Any]]:
    return [{"class_path": "fr_lightning.methods.CoTeaching", "init_args": {"forget_rate": NOISE, "ramp": 5, "ramp_unit": "epoch", **init}}]


#: variant -> (method callbacks, epochs multiplier)
VARIANTS: dict[str, tuple[list[dict[str, Any]], int]] = {
    "baseline": ([], 1),
    "coteaching": (_coteaching(), 1),
    "selection-only": (_coteaching(agreement_weight=0.0), 1),
    "agreement-only": (_coteaching(forget_rate=0.0), 1),
    "baseline-2x": ([], 2),
}


def data_section(budget: dict[str, int]) -> dict[str, Any]:
    """The data section of a run at ``budget`` (what the seeds draw from)."""
    train = synthetic_train(budget["identities"], budget["per_identity"], "noise")
    val = [pairs_entry("synth-lfw", "standard", budget["pairs"], 0, "noise")]
    return {"init_args": {"train": train, "val_sets": val, "label_noise": {"kind": "symmetric", "rate": NOISE, "seed": 0}}}


def run_args(budget: dict[str, int], callbacks: list[dict[str, Any]], epochs: int) -> list[str]:
    """``fr fit`` arguments of one variant (without the seed's): validated every 2 epochs, the curve kept."""
    data = data_section(budget)["init_args"]
    return [
        "--config", str(ROOT / "recipes" / "arcface.yaml"),
        *budget_overrides(data["train"], data["val_sets"], budget["batch_size"], budget["image_size"], epochs, val_every=min(2, epochs)),
        f"--data.init_args.label_noise={flow(data['label_noise'])}",
        f"--trainer.callbacks={flow([*callbacks, CURVE])}",
    ]


def curve_lines(results: dict[str, list[dict[str, Any]]], seeds: list[int]) -> list[str]:
    """Per variant and seed: the clean-validation curve, its peak and its drop from the peak (points)."""
    lines = []
    for variant, runs in results.items():
        for seed, run in zip(seeds, runs):
            curve = [100 * p["val/synth-lfw/acc"] for p in run.get("curve", [])]
            if curve:
                lines.append(f"{variant} seed {seed}: " + ", ".join(f"{v:.1f}" for v in curve) + f"  (peak {max(curve):.1f}, drop {max(curve) - curve[-1]:.1f})")
        finals = [100 * r["val/synth-lfw/acc"] for r in runs]
        lines.append(f"{variant}: final {np.mean(finals):.2f} ± {np.std(finals, ddof=1) if len(finals) > 1 else 0:.2f}, spread {max(finals) - min(finals):.2f}")
    return lines


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = study_parser(__doc__, "smoke run: 2 epochs of 8 identities × 4, 40 pairs, one calibration seed")
    parser.add_argument("--calibrate", action="store_true", help="baseline only, 12 epochs, calibration seeds: the preset's curve")
    args = parser.parse_args(argv)
    claim, *others = (CLAIMS[name] for name in STUDY_CLAIMS)
    budget = QUICK if args.quick else BUDGET
    plan = study_plan(claim, args, "--calibrate" if args.calibrate else "")
    seeds, tag = plan.seeds, plan.tag
    if args.calibrate:
        seeds = args.seeds or ([CALIBRATION_SEEDS[0]] if args.quick else list(CALIBRATION_SEEDS))
        if set(seeds) & set(claim.seeds):
            parser.error(f"--calibrate runs on calibration seeds only, never on the reported seeds {list(claim.seeds)}")
        runs = {"baseline": run_args(budget, [], CALIBRATION_EPOCHS)}
        tag = "calibration" + ("-quick" if args.quick else "")
    else:
        runs = {v: run_args(budget, callbacks, budget["epochs"] * k) for v, (callbacks, k) in VARIANTS.items()}
    data = data_section(budget)
    results = run_study(claim, runs, seeds, lambda _args, seed: data_seed_args(data, seed), plan.command, args.out_dir, tag, also=others, jobs=plan.jobs)
    print("\n".join(curve_lines(results, seeds)), flush=True)
    return results


if __name__ == "__main__":
    main()
