"""Margin heads compared on the synthetic faces: same backbone, schedule, data and budget.

    python experiments/heads.py                       # 8 heads x 3 seeds (about 45 min on 2 cores)
    python experiments/heads.py --heads arcface adasin --seeds 0 --epochs 1   # a quick look

Every run is `recipes/arcface.yaml` with the head swapped by its `configs/heads/<name>.yaml`
fragment (each head at its published defaults except the logit scale, which is the recipe's
s=32 for all: at s=64 the small CPU backbone does not converge with ArcFace-style margins), and a
smaller budget than the recipe so the whole grid fits a CPU session. Results: `experiments/out/heads.{json,md}`.
"""

from __future__ import annotations

import argparse

from experiments.common import ROOT, budget_args, run_fit, save, table

HEADS = ["normface", "cosface", "arcface", "curricularface", "adaface", "adasin", "x2softmax", "sface"]
COLUMNS = {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc", "synth-lowres": "val/synth-lowres/acc"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", default=HEADS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--scale", type=float, default=32.0, help="logit scale s for every head (the recipe's)")
    args = parser.parse_args()
    common = ["--config", str(ROOT / "recipes" / "arcface.yaml")]
    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, sets=COLUMNS)
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-p{args.pairs}-s{args.scale:g}"
    results = {}
    for head in args.heads:
        fragment = ["--config", str(ROOT / "configs" / "heads" / f"{head}.yaml"), f"--model.init_args.head.init_args.s={args.scale}"]
        results[head] = [run_fit(f"heads-{head}-{tag}", [*common, *fragment, *budget], seed) for seed in args.seeds]
    cmd = "python experiments/heads.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
    )
    md = f"Command: `{cmd}`\n\n" + table(results, COLUMNS)
    save("heads", results, md)


if __name__ == "__main__":
    main()
