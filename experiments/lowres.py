"""Low-resolution training compared on the synthetic faces: same backbone, data, schedule and budget.

    python experiments/lowres.py                                   # 3 variants x 3 seeds
    python experiments/lowres.py --epochs 1 --identities 20 --per-identity 8 --batch-size 32 --pairs 100 --seeds 0   # smoke check

Variants, all `recipes/lowres.yaml` (iResNet at 56 px, ArcFace) with only `trainer.callbacks`
changed:

* `baseline` — plain training (the ArcFace recipe's model and schedule);
* `multires` — `LowRes(logexp_weight=0)`: the degraded view and ½·(CE(HR) + CE(LR)) only;
* `multires+logexp` — `LowRes()`: plus LogExp(x_HR, x_LR), λ = 1.

Every run ends with `LowResEvaluation` on `synth-lfw` (all `--pairs` pairs, second image of each
pair degraded; sizes at the 112-px reference, i.e. half of that in px at 56 px) and rank-1
identification of degraded probes against an HR gallery. "Same budget" = same images, steps and
epochs; the multi-resolution variants do two forward/backward passes per image (HR and LR), so
they cost about twice the baseline's compute. Results: `experiments/out/lowres.{json,md}`.
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
    "multires": "{class_path: fr_lightning.methods.LowRes, init_args: {logexp_weight: 0.0}}, ",
    "multires+logexp": "{class_path: fr_lightning.methods.LowRes, init_args: {logexp_weight: 1.0, logexp_mode: pair}}, ",
}
REPORTED = [8, 12, 16, 0]


def label(size: int) -> str:
    return "full" if size == 0 else str(size)


def callbacks_arg(variant: str, pairs: int, sizes: list[int]) -> str:
    evaluation = (
        "{class_path: fr_lightning.eval.lowres.LowResEvaluation, init_args: "
        f"{{pairs_from: synth-lfw, max_pairs: {pairs}, sizes: {sizes}, plot: true}}}}"
    )
    return f"--trainer.callbacks=[{VARIANTS[variant]}{evaluation}]"


def gains(results: dict[str, list[dict[str, float]]], key: str) -> dict[str, str]:
    """Per variant: mean ± std over seeds of (variant − baseline) for metric ``key``, in points."""
    base = [r.get(key, float("nan")) for r in results["baseline"]]
    out = {}
    for variant, runs in results.items():
        if variant == "baseline":
            continue
        diff = 100.0 * (np.array([r.get(key, float("nan")) for r in runs]) - np.array(base))
        out[variant] = "n/a" if np.isnan(diff).any() else f"{diff.mean():+.2f} ± {diff.std():.2f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (each variant; multires adds their LR copies)")
    parser.add_argument("--pairs", type=int, default=2000, help="synth-lfw pairs (all used by the low-res evaluation)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 12, 16, 24, 0], help="probe sizes at 112-px scale; 0 = full")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes) | set(REPORTED), key=lambda s: s or 10**6)
    recipe = ["--config", str(ROOT / "recipes" / "lowres.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size)
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-r{'_'.join(map(str, sizes))}"
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # seed-major: every variant of a seed is done before the next seed
        for variant in args.variants:
            run_args = [*recipe, *budget, callbacks_arg(variant, args.pairs, sizes)]
            results[variant].append(run_fit(f"lowres-{variant.replace('+', '-')}-{tag}", run_args, seed))

    acc = {f"{label(s)} px" if s else "full": f"val/synth-lowres@{label(s)}/acc" for s in REPORTED}
    rank = {f"{label(s)} px" if s else "full": f"val/synth-lowres@{label(s)}/rank1" for s in REPORTED}
    cmd = "python experiments/lowres.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
    )
    lines = [
        f"Command: `{cmd}`",
        "",
        f"Verification accuracy (%) on synth-lfw with one image of each pair degraded to r px (at 112-px scale; "
        f"the runs are at 56 px, so r/2 px), mean ± std over seeds {args.seeds}:",
        "",
        table(results, acc),
        "",
        "Rank-1 identification (%) of probes degraded to r px against a gallery of one HR image per identity:",
        "",
        table(results, rank),
    ]
    if "baseline" in results and len(results) > 1:
        lines += ["", "Gain over the baseline (points, paired by seed):", ""]
        head = "| variant | " + " | ".join(acc) + " |"
        lines += [head, "|---|" + "---|" * len(acc)]
        per_key = {name: gains(results, key) for name, key in acc.items()}
        for variant in results:
            if variant != "baseline":
                lines.append(f"| {variant} | " + " | ".join(per_key[name][variant] for name in acc) + " |")
    walls = {v: np.mean([r["wall_s"] for r in runs]) for v, runs in results.items() if runs}
    lines += ["", "Mean wall time per run: " + ", ".join(f"{v} {w:.0f} s" for v, w in walls.items())]
    save("lowres", results, "\n".join(lines))


if __name__ == "__main__":
    main()
