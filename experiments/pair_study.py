"""Pair-based objectives against ArcFace at one budget: FaceNet triplet, Centroid Triplet Loss, and triplet as an aux term.

    python -m experiments.pair_study              # the reported study (claims `pair-*` in experiments/claims.py)
    python -m experiments.pair_study --quick      # smoke run: tiny data, seconds, not reported
    python -m experiments.pair_study --seeds 101  # a calibration seed, never reported

Five variants, each a shipped recipe with the same data, image size, batch size, steps and
evaluation (:data:`BUDGET`, one budget for all, smaller than the recipes' own so that five seeds
fit on 2 CPU cores):

- ``arcface``: ``recipes/arcface.yaml`` (shuffled batches);
- ``arcface-pk``: the same with identity-balanced P × K batches (``sampler: pk``, K = 4);
- ``arcface+triplet``: ``arcface-pk`` plus the triplet term (``methods.PairLoss``, weight 1), so
  the term is the only difference from ``arcface-pk``;
- ``triplet``: ``recipes/triplet.yaml`` (no classifier); ``ctl``: ``recipes/ctl.yaml`` (no classifier).

Every study seed draws the training faces and the evaluation pairs (:mod:`experiments.seeds`).
Run files go to ``experiments/out/v2/pair/``; ``python -m experiments.report`` computes the
verdicts of the claims that read them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.claims import CLAIMS
from experiments.preset_study import flow
from experiments.seeds import CALIBRATION_SEEDS, data_seed_args
from experiments.study import OUT_V2, ROOT, run_study

#: the claims that read this study's runs; the first names the folder and the command
STUDY_CLAIMS = ("pair-arcface-over-triplet", "pair-arcface-over-ctl", "pair-triplet-aux")
#: one budget for every variant: identities, images per identity, epochs, batch (P x K, K = 4), image size, pairs
BUDGET = {"identities": 400, "per_identity": 20, "epochs": 4, "batch_size": 128, "image_size": 32, "pairs": 2000}
QUICK = {"identities": 8, "per_identity": 4, "epochs": 1, "batch_size": 16, "image_size": 32, "pairs": 40}
PK = ["--data.init_args.sampler=pk", "--data.init_args.sampler_k=4"]
TRIPLET_TERM = [{"class_path": "fr_lightning.methods.PairLoss", "init_args": {"loss": "triplet", "weight": 1.0}}]


def budget_args(budget: dict[str, int]) -> tuple[list[str], dict[str, Any]]:
    """``fr fit`` overrides shared by every variant, and the data section the seeds draw from."""
    train = {"class_path": "fr_lightning.data.SyntheticSource", "init_args": {"num_identities": budget["identities"], "samples_per_identity": budget["per_identity"]}}
    val = [
        {"class_path": "fr_lightning.data.SyntheticPairs", "init_args": {"name": "synth-lfw", "kind": "standard", "pairs": budget["pairs"], "set_seed": 0}},
        {"class_path": "fr_lightning.data.SyntheticPairs", "init_args": {"name": "synth-cfpfp", "kind": "cross_pose", "pairs": budget["pairs"] // 2, "set_seed": 1}},
    ]
    size = budget["image_size"]
    args = [
        f"--data.init_args.train={flow(train)}",
        f"--data.init_args.val_sets={flow(val)}",
        f"--data.init_args.batch_size={budget['batch_size']}",
        f"--data.init_args.image_size={size}",
        f"--model.init_args.backbone.init_args.input_size={size}",
        "--data.init_args.num_workers=0",
        f"--trainer.max_epochs={budget['epochs']}",
        f"--trainer.check_val_every_n_epoch={budget['epochs']}",
        "--trainer.enable_checkpointing=false",
    ]
    return args, {"init_args": {"train": train, "val_sets": val}}


def variants(budget: dict[str, int]) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Variant -> ``fr fit`` arguments (without the seed's), and the data section the seeds draw from."""
    shared, data = budget_args(budget)

    def recipe(name: str) -> list[str]:
        return ["--config", str(ROOT / "recipes" / f"{name}.yaml")]

    return {
        "arcface": [*recipe("arcface"), *shared],
        "arcface-pk": [*recipe("arcface"), *shared, *PK],
        "arcface+triplet": [*recipe("arcface"), *shared, *PK, f"--trainer.callbacks={flow(TRIPLET_TERM)}"],
        "triplet": [*recipe("triplet"), *shared],
        "ctl": [*recipe("ctl"), *shared],
    }, data


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the claims' reported seeds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 8 identities × 4, 40 pairs, one calibration seed")
    parser.add_argument("--out-dir", type=Path, default=OUT_V2)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (2: both cores of the 2-core machine)")
    args = parser.parse_args(argv)
    claim, *others = (CLAIMS[name] for name in STUDY_CLAIMS)
    seeds = args.seeds or ([CALIBRATION_SEEDS[0]] if args.quick else list(claim.seeds))
    runs, data = variants(QUICK if args.quick else BUDGET)
    tag = "quick" if args.quick else ("" if set(seeds) <= set(claim.seeds) else "unreported")
    command = claim.command + (" --quick" if args.quick else "") + (f" --seeds {' '.join(map(str, seeds))}" if args.seeds else "")
    return run_study(claim, runs, seeds, lambda _args, seed: data_seed_args(data, seed), command, args.out_dir, tag, also=others, jobs=1 if args.quick else args.jobs)


if __name__ == "__main__":
    main()
