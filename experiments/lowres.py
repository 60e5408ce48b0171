"""Low-resolution training compared on the synthetic faces: same backbone, data, schedule and budget.

    python -m experiments.lowres                   # 3 variants x 3 seeds
    python -m experiments.lowres --quick           # smoke run: baseline and multires+logexp, tiny data, seed 0

Variants, all `recipes/lowres.yaml` (iResNet at 56 px, ArcFace) with only `trainer.callbacks`
changed:

* `baseline` — plain training (the ArcFace recipe's model and schedule);
* `multires` — `LowRes(logexp_weight=0)`: the degraded view and ½·(CE(HR) + CE(LR)) only;
* `multires+logexp` — `LowRes()`: plus LogExp(x_HR, x_LR), λ = 1.

Every run ends with `LowResEvaluation` on `synth-lfw` (all `--pairs` pairs, second image of each
pair degraded; sizes at the 112-px reference, i.e. half of that in px at 56 px) and rank-1
identification of degraded probes against an HR gallery. "Same budget" = same images, steps and
epochs; the multi-resolution variants do two forward/backward passes per image (HR and LR), so
they cost about twice the baseline's compute. Results: `experiments/out/lowres.{json,md}`
(`lowres-quick.*` for `--quick`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.common import OUT, ROOT, budget_args, callbacks_arg, command, quick_budget, run_fit, save
from experiments.preset_study import gain_lines, table, wall_line

#: variant -> LowRes init args (None: no LowRes).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "baseline": None,
    "multires": {"logexp_weight": 0.0},
    "multires+logexp": {"logexp_weight": 1.0, "logexp_mode": "pair"},
}
QUICK_VARIANTS = ["baseline", "multires+logexp"]
REPORTED = [8, 12, 16, 0]


def label(size: int) -> str:
    return "full" if size == 0 else str(size)


def callbacks(variant: str, pairs: int, sizes: list[int]) -> list[dict[str, Any]]:
    """The `trainer.callbacks` of one variant: the method (if any), then the low-res evaluation."""
    evaluation = {
        "class_path": "fr_lightning.eval.lowres.LowResEvaluation",
        "init_args": {"pairs_from": "synth-lfw", "max_pairs": pairs, "sizes": sizes, "plot": True},
    }
    init = VARIANTS[variant]
    method = [] if init is None else [{"class_path": "fr_lightning.methods.LowRes", "init_args": init}]
    return [*method, evaluation]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (each variant; multires adds their LR copies)")
    parser.add_argument("--pairs", type=int, default=2000, help="synth-lfw pairs (all used by the low-res evaluation)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 12, 16, 24, 0], help="probe sizes at 112-px scale; 0 = full")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: baseline and multires+logexp, 1 epoch of 6 identities × 4, 40 pairs, seed 0"
    )
    args = parser.parse_args(argv)
    if args.quick:
        quick_budget(args, **({"variants": QUICK_VARIANTS} if args.variants == list(VARIANTS) else {}))
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    sizes = sorted(set(args.sizes) | set(REPORTED), key=lambda s: s or 10**6)
    recipe = ["--config", str(ROOT / "recipes" / "lowres.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size)
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}-r{'_'.join(map(str, sizes))}"
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # seed-major: every variant of a seed is done before the next seed
        for variant in args.variants:
            run = [*recipe, *budget, callbacks_arg(callbacks(variant, args.pairs, sizes))]
            results[variant].append(run_fit(f"lowres-{variant.replace('+', '-')}-{tag}", run, seed, args.out_dir))

    acc = {f"{label(s)} px" if s else "full": f"val/synth-lowres@{label(s)}/acc" for s in REPORTED}
    rank = {f"{label(s)} px" if s else "full": f"val/synth-lowres@{label(s)}/rank1" for s in REPORTED}
    lines = [
        f"Command: `{command('lowres', args)}`",
        "",
        f"Verification accuracy (%) on synth-lfw with one image of each pair degraded to r px (at 112-px scale; "
        f"the runs are at 56 px, so r/2 px), mean ± std over seeds {args.seeds}:",
        "",
        *table(results, acc),
        "",
        "Rank-1 identification (%) of probes degraded to r px against a gallery of one HR image per identity:",
        "",
        *table(results, rank),
        *gain_lines(results, acc),
        "",
        wall_line(results),
    ]
    save("lowres-quick" if args.quick else "lowres", results, "\n".join(lines), args.out_dir)
    return results


if __name__ == "__main__":
    main()
