"""PoseFace (a reconstruction; docs/methods.md, "PoseFace") compared on the synthetic faces: same backbone, data, schedule and budget.

    python -m experiments.poseface                 # 4 variants x 3 seeds
    python -m experiments.poseface --quick         # smoke run: baseline and poseface, tiny data, seed 0

Variants, all `recipes/poseface.yaml` (iResNet at 56 px, ArcFace; the synthetic training mix has
15% profiles) with only `trainer.callbacks` changed:

* `baseline` — plain training (no PoseFace);
* `poseface` — `PoseFace()`: pose branch + decorrelation and pose-adaptive weights;
* `weights` — `PoseFace(disentangle=false)`: pose-adaptive weights only;
* `disentangle` — `PoseFace(adaptive=none)`: pose branch + decorrelation only;
* `margin` (not run by default) — `PoseFace(adaptive=margin)`: disentangling + pose-dependent margin.

Every run ends with the verification callback on `synth-lfw` and `synth-cfpfp` (frontal vs
profile, profiles at 55-80° |yaw|) and `PoseEvaluation`'s accuracy per |yaw| bin of the profile
side. "Same budget" = same images, steps and epochs (PoseFace adds a small MLP on pooled
features). Results: `experiments/out/poseface.{json,md}` (`poseface-quick.*` for `--quick`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.common import OUT, ROOT, budget_args, callbacks_arg, command, quick_budget, run_fit, save
from experiments.preset_study import gain_lines, table, wall_line

#: variant -> PoseFace init args (None: no PoseFace).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "baseline": None,
    "poseface": {"adaptive": "weights", "disentangle": True},
    "weights": {"adaptive": "weights", "disentangle": False},
    "disentangle": {"adaptive": "none", "disentangle": True},
    "margin": {"adaptive": "margin", "disentangle": True},
}
DEFAULT_VARIANTS = ["baseline", "poseface", "weights", "disentangle"]
QUICK_VARIANTS = ["baseline", "poseface"]


def callbacks(variant: str, bins: list[float]) -> list[dict[str, Any]]:
    """The `trainer.callbacks` of one variant: the method (if any), then the per-yaw evaluation."""
    evaluation = {
        "class_path": "fr_lightning.eval.pose.PoseEvaluation",
        "init_args": {"set_name": "synth-cfpfp", "bins": bins, "plot": True},
    }
    init = VARIANTS[variant]
    method = [] if init is None else [{"class_path": "fr_lightning.methods.PoseFace", "init_args": init}]
    return [*method, evaluation]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs of synth-lfw and of synth-cfpfp")
    parser.add_argument("--bins", nargs="+", type=float, default=[55, 60, 65, 70, 75, 80], help="|yaw| bin edges (degrees)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke run: baseline and poseface, 1 epoch of 6 identities × 4, 40 pairs, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        quick_budget(args, **({"variants": QUICK_VARIANTS} if args.variants == DEFAULT_VARIANTS else {}))
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    recipe = ["--config", str(ROOT / "recipes" / "poseface.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, sets=("synth-lfw", "synth-cfpfp"), batch_size=args.batch_size)
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-y{'_'.join(f'{b:g}' for b in args.bins)}"
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # seed-major: every variant of a seed is done before the next seed
        for variant in args.variants:
            run = [*recipe, *budget, callbacks_arg(callbacks(variant, args.bins))]
            results[variant].append(run_fit(f"poseface-{variant}-{tag}", run, seed, args.out_dir))

    main_cols = {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"}
    edges = args.bins
    yaw_cols = {f"{lo:g}-{hi:g}°": f"val/synth-cfpfp/acc@yaw{lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:])}
    lines = [
        f"Command: `{command('poseface', args)}`",
        "",
        f"Verification accuracy (%), mean ± std over seeds {args.seeds}:",
        "",
        *table(results, main_cols),
        "",
        "synth-cfpfp accuracy (%) per |yaw| bin of the profile image (each pair decided at its fold's threshold):",
        "",
        *table(results, yaw_cols),
        *gain_lines(results, {**main_cols, **yaw_cols}),
        "",
        wall_line(results),
    ]
    save("poseface-quick" if args.quick else "poseface", results, "\n".join(lines), args.out_dir)
    return results


if __name__ == "__main__":
    main()
