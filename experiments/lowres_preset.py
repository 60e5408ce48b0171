"""Multi-resolution training (+ LogExp) against an ArcFace baseline on the ``lowres`` preset.

    python -m experiments.lowres_preset                 # 4 variants × 3 seeds (the reported study)
    python -m experiments.lowres_preset --quick         # smoke run: tiny data, one seed, seconds
    python -m experiments.lowres_preset --variants baseline --seeds 100   # calibration (unreported seed)

Variants (same data, images, steps and epochs; `recipes/lowres.yaml`'s network: iResNet-18 at
width 1/4, ArcFace s = 32, m = 0.5):

* ``baseline`` — plain ArcFace training on HR images;
* ``multires`` — ``LowRes(logexp_weight=0)``: an LR copy of every batch (7 / 14 / 20 px at
  112-px scale) and ½·(CE(HR) + CE(LR));
* ``multires+logexp`` — ``LowRes()``: plus LogExp(x_HR, x_LR), λ = 1.
* ``hrce+logexp`` — ``LowRes(ce_lr_weight=0)``: the classifier sees HR rows only and the LR view
  is trained through LogExp alone (a departure from the paper's ½·(CE(HR) + CE(LR)); on this
  preset the LR cross-entropy keeps the whole model at chance, see docs/results/v1.md).

Evaluation: ``synth-lfw`` pairs rendered with the preset, the second image of each pair degraded
to r px at 112-px scale (r·S/112 px at S px) by ``LowResEvaluation``. Results:
``experiments/out/lowres_preset.{json,md}``. Prints its wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from experiments.preset_study import OUT, ROOT, data_args, gain_lines, pairs_entry, run_grid, save, table, trainer_args, wall_line

PRESET = "lowres"
VARIANTS: dict[str, list[dict[str, object]]] = {
    "baseline": [],
    "multires": [{"class_path": "fr_lightning.methods.LowRes", "init_args": {"logexp_weight": 0.0}}],
    "multires+logexp": [
        {"class_path": "fr_lightning.methods.LowRes", "init_args": {"logexp_weight": 1.0, "logexp_mode": "pair"}}
    ],
    "hrce+logexp": [
        {
            "class_path": "fr_lightning.methods.LowRes",
            "init_args": {"logexp_weight": 1.0, "logexp_mode": "pair", "ce_lr_weight": 0.0},
        }
    ],
}


def label(size: int) -> str:
    return "full" if size == 0 else f"{size} px"


def retained(runs: list[dict[str, float]], key: str, full: str | None) -> str:
    """Mean ± std over seeds of (acc − 0.5) / (acc_full − 0.5): how much of the margin over chance survives."""
    if full is None or not runs:
        return "n/a"
    values = np.array([(r[key] - 0.5) / max(r[full] - 0.5, 1e-6) for r in runs])
    return f"{values.mean():.2f} ± {values.std():.2f}"


def run_args(
    variant: str,
    args: argparse.Namespace,
    callbacks: list[dict[str, object]] | None = None,
    label_noise: float | None = None,
    preset: str = PRESET,
) -> list[str]:
    """`fr fit` arguments of one variant: the recipe, the preset data and the low-res evaluation.

    ``callbacks`` replaces the variant's method callbacks and ``preset`` the data preset (the
    combination studies use both).
    """
    evaluation = {
        "class_path": "fr_lightning.eval.lowres.LowResEvaluation",
        "init_args": {"pairs_from": "synth-lfw", "max_pairs": args.pairs, "sizes": args.sizes, "identification": False, "plot": False},
    }
    val = [pairs_entry("synth-lfw", "standard", args.pairs, 0, preset)]
    return [
        "--config",
        str(ROOT / "recipes" / "arcface.yaml"),
        *data_args(preset, args.identities, args.per_identity, val, args.batch_size, image_size=args.image_size, label_noise=label_noise),
        *trainer_args(args.epochs, [*(VARIANTS[variant] if callbacks is None else callbacks), evaluation]),
    ]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 16, 32, 0], help="probe sizes at 112-px scale; 0 = full")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each (2 = both cores of the CPU VM)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 6 identities × 4, 40 pairs, 32 px, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.identities, args.per_identity = [0], 1, 6, 4
        args.batch_size, args.pairs, args.image_size, args.sizes, args.jobs = 12, 40, 32, [8, 0], 1
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    args = parse(argv)
    start = time.time()
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-s{args.image_size}-p{args.pairs}"
    runs = {v: (f"lowres_preset-{v.replace('+', '-')}-{tag}", run_args(v, args)) for v in args.variants}
    results = run_grid(runs, args.seeds, args.out_dir, args.jobs, show={"full": "val/synth-lowres@full/acc"})
    cols = {label(s): f"val/synth-lowres@{'full' if s == 0 else s}/acc" for s in args.sizes}
    lines = [
        f"Preset `{PRESET}`, budget {tag}, seeds {args.seeds}. Verification accuracy (%), one image of each "
        f"synth-lfw pair degraded to r px (112-px scale), mean ± std over seeds:",
        "",
        *table(results, cols),
    ]
    if "baseline" in results:
        full = cols["full"] if "full" in cols else None
        lines += ["", "Baseline calibration: share of the above-chance margin kept, (acc(r) − 50) / (acc(full) − 50):", ""]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines.append("| " + " | ".join(retained(results["baseline"], key, full) for key in cols.values()) + " |")
    lines += gain_lines(results, cols)
    wall = time.time() - start
    lines += ["", wall_line(results)]
    study = "lowres_preset" if not args.quick else "lowres_preset-quick"
    save(study if args.variants == list(VARIANTS) else f"{study}-{'_'.join(args.variants)}-s{'_'.join(map(str, args.seeds))}", args.out_dir, results, lines)
    print(f"wall time {wall:.0f} s")
    return results


if __name__ == "__main__":
    main()
