"""PoseFace (a reconstruction; docs/methods.md, "PoseFace") compared on the synthetic faces: same backbone, data, schedule and budget.

    python experiments/poseface.py                     # 4 variants x 3 seeds
    python experiments/poseface.py --epochs 1 --identities 20 --per-identity 8 --batch-size 32 --pairs 100 --seeds 0   # smoke check

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
features). Results: `experiments/out/poseface.{json,md}`.
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
    "poseface": "{class_path: fr_lightning.methods.PoseFace, init_args: {adaptive: weights, disentangle: true}}, ",
    "weights": "{class_path: fr_lightning.methods.PoseFace, init_args: {adaptive: weights, disentangle: false}}, ",
    "disentangle": "{class_path: fr_lightning.methods.PoseFace, init_args: {adaptive: none, disentangle: true}}, ",
    "margin": "{class_path: fr_lightning.methods.PoseFace, init_args: {adaptive: margin, disentangle: true}}, ",
}
DEFAULT_VARIANTS = ["baseline", "poseface", "weights", "disentangle"]


def callbacks_arg(variant: str, bins: list[float]) -> str:
    evaluation = f"{{class_path: fr_lightning.eval.pose.PoseEvaluation, init_args: {{set_name: synth-cfpfp, bins: {bins}, plot: true}}}}"
    return f"--trainer.callbacks=[{VARIANTS[variant]}{evaluation}]"


def gains(results: dict[str, list[dict[str, float]]], key: str) -> dict[str, str]:
    """Per variant: mean ± std over seeds of (variant − baseline) for metric ``key``, in points."""
    base = np.array([r.get(key, float("nan")) for r in results["baseline"]])
    out = {}
    for variant, runs in results.items():
        if variant == "baseline":
            continue
        diff = 100.0 * (np.array([r.get(key, float("nan")) for r in runs]) - base)
        out[variant] = "n/a" if np.isnan(diff).any() else f"{diff.mean():+.2f} ± {diff.std():.2f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs of synth-lfw and of synth-cfpfp")
    parser.add_argument("--bins", nargs="+", type=float, default=[55, 60, 65, 70, 75, 80], help="|yaw| bin edges (degrees)")
    args = parser.parse_args()
    recipe = ["--config", str(ROOT / "recipes" / "poseface.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, sets=("synth-lfw", "synth-cfpfp"), batch_size=args.batch_size)
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-y{'_'.join(f'{b:g}' for b in args.bins)}"
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # seed-major: every variant of a seed is done before the next seed
        for variant in args.variants:
            run_args = [*recipe, *budget, callbacks_arg(variant, args.bins)]
            results[variant].append(run_fit(f"poseface-{variant}-{tag}", run_args, seed))

    main_cols = {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"}
    edges = args.bins
    yaw_cols = {f"{lo:g}-{hi:g}°": f"val/synth-cfpfp/acc@yaw{lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:])}
    cmd = "python experiments/poseface.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(f'{x:g}' if isinstance(x, float) else str(x) for x in v) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
    )
    lines = [
        f"Command: `{cmd}`",
        "",
        f"Verification accuracy (%), mean ± std over seeds {args.seeds}:",
        "",
        table(results, main_cols),
        "",
        "synth-cfpfp accuracy (%) per |yaw| bin of the profile image (each pair decided at its fold's threshold):",
        "",
        table(results, yaw_cols),
    ]
    if "baseline" in results and len(results) > 1:
        cols = {**main_cols, **yaw_cols}
        lines += ["", "Gain over the baseline (points, paired by seed):", ""]
        lines += ["| variant | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        per_key = {name: gains(results, key) for name, key in cols.items()}
        for variant in results:
            if variant != "baseline":
                lines.append(f"| {variant} | " + " | ".join(per_key[name][variant] for name in cols) + " |")
    walls = {v: np.mean([r["wall_s"] for r in runs]) for v, runs in results.items() if runs}
    lines += ["", "Mean wall time per run: " + ", ".join(f"{v} {w:.0f} s" for v, w in walls.items())]
    save("poseface", results, "\n".join(lines))


if __name__ == "__main__":
    main()
