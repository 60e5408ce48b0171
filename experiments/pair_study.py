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

from typing import Any

from experiments.claims import CLAIMS
from experiments.preset_study import flow, pairs_entry
from experiments.seeds import data_seed_args
from experiments.study import ROOT, run_study
from experiments.study_cli import budget_overrides, study_parser, study_plan, synthetic_train

#: the claims that read this study's runs; the first names the folder and the command
STUDY_CLAIMS = ("pair-arcface-over-triplet", "pair-arcface-over-ctl", "pair-triplet-aux")
#: one budget for every variant: identities, images per identity, epochs, batch (P x K, K = 4), image size, pairs
BUDGET = {"identities": 400, "per_identity": 20, "epochs": 4, "batch_size": 128, "image_size": 32, "pairs": 2000}
QUICK = {"identities": 8, "per_identity": 4, "epochs": 1, "batch_size": 16, "image_size": 32, "pairs": 40}
PK = ["--data.init_args.sampler=pk", "--data.init_args.sampler_k=4"]
TRIPLET_TERM = [{"class_path": "fr_lightning.methods.PairLoss", "init_args": {"loss": "triplet", "weight": 1.0}}]


def budget_args(budget: dict[str, int]) -> tuple[list[str], dict[str, Any]]:
    """``fr fit`` overrides shared by every variant, and the data section the seeds draw from."""
    train = synthetic_train(budget["identities"], budget["per_identity"])
    val = [pairs_entry("synth-lfw", "standard", budget["pairs"], 0, None), pairs_entry("synth-cfpfp", "cross_pose", budget["pairs"] // 2, 1, None)]
    args = budget_overrides(train, val, budget["batch_size"], budget["image_size"], budget["epochs"])
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
    args = study_parser(__doc__, "smoke run: 1 epoch of 8 identities × 4, 40 pairs, one calibration seed").parse_args(argv)
    claim, *others = (CLAIMS[name] for name in STUDY_CLAIMS)
    plan = study_plan(claim, args)
    runs, data = variants(QUICK if args.quick else BUDGET)
    return run_study(claim, runs, plan.seeds, lambda _args, seed: data_seed_args(data, seed), plan.command, args.out_dir, plan.tag, also=others, jobs=plan.jobs)


if __name__ == "__main__":
    main()
