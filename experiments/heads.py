"""Margin heads compared on the synthetic faces: same backbone, schedule, data and budget.

    python -m experiments.heads                       # 8 heads x 3 seeds (about 45 min on 2 cores)
    python -m experiments.heads --heads arcface adasin --seeds 0 --epochs 1   # a quick look
    python -m experiments.heads --quick               # smoke run: arcface and adasin, tiny data, seed 0

Every run is `recipes/arcface.yaml` with the head swapped by its `configs/heads/<name>.yaml`
fragment (each head at its published defaults except the logit scale, which is the recipe's
s=32 for all: at s=64 the small CPU backbone does not converge with ArcFace-style margins), and a
smaller budget than the recipe so the whole grid fits a CPU session. Results:
`experiments/out/heads.{json,md}` (`heads-quick.*` for `--quick`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.common import OUT, ROOT, budget_args, command, quick_budget, run_fit, save
from experiments.preset_study import table

HEADS = ["normface", "cosface", "arcface", "curricularface", "adaface", "adasin", "x2softmax", "sface"]
QUICK_HEADS = ["arcface", "adasin"]
COLUMNS = {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc", "synth-lowres": "val/synth-lowres/acc"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", default=HEADS, choices=HEADS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--scale", type=float, default=32.0, help="logit scale s for every head (the recipe's)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke run: arcface and adasin, 1 epoch of 6 identities × 4, 40 pairs, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        quick_budget(args, **({"heads": QUICK_HEADS} if args.heads == HEADS else {}))
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    recipe = ["--config", str(ROOT / "recipes" / "arcface.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, sets=COLUMNS, batch_size=args.batch_size)
    batch = "" if args.batch_size is None else f"-b{args.batch_size}"
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}{batch}-p{args.pairs}-s{args.scale:g}"
    results = {}
    for head in args.heads:
        fragment = ["--config", str(ROOT / "configs" / "heads" / f"{head}.yaml"), f"--model.init_args.head.init_args.s={args.scale}"]
        results[head] = [run_fit(f"heads-{head}-{tag}", [*recipe, *fragment, *budget], seed, args.out_dir) for seed in args.seeds]
    md = f"Command: `{command('heads', args)}`\n\n" + "\n".join(table(results, COLUMNS))
    save("heads-quick" if args.quick else "heads", results, md, args.out_dir)
    return results


if __name__ == "__main__":
    main()
