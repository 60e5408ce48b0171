"""F²C against Partial FC under protocol v2: as accurate at the same steps and images per step.

    python -m experiments.classifier_study            # 2 classifiers x 5 data-drawing seeds (claim f2c-partial-fc)
    python -m experiments.classifier_study --quick    # smoke run: tiny data, one calibration seed, seconds

Keeps v1's design (``experiments.f2c_study``, whose ``run_args`` builds both variants): default
faces, 200 identities x 20 at 32 px, `recipes/arcface.yaml`'s network and head; ``partial-fc``
(``PartialFC(sample_rate=0.25)``, 6 epochs of 60 images per step) and ``f2c`` (``F2C(pool_fraction=0.25)``
with the EMA gallery and the dual loaders, 10 items of 6 images per step for 2 epochs: the same
steps and images). F²C's extra no-grad gallery forward is not budgeted; the wall times are
reported. What v2 changes: each seed draws the training faces and the evaluation pairs; 1,000
pairs per set (v1: 600); the claim is a non-inferiority rule (F²C's paper claims accuracy
comparable to the FC layer it replaces, not better).
"""

from __future__ import annotations

import argparse
from typing import Any

from experiments.claims import CLAIMS
from experiments.f2c_study import run_args
from experiments.preset_study import pairs_entry
from experiments.seeds import data_seed_args
from experiments.study import run_study
from experiments.study_cli import study_parser, study_plan, synthetic_train

VARIANTS = ("partial-fc", "f2c")
BUDGET = {"identities": 200, "per_identity": 20, "epochs": 6, "batch_size": 60, "image_size": 32, "pairs": 1000, "fraction": 0.25}
QUICK = {"identities": 6, "per_identity": 4, "epochs": 3, "batch_size": 12, "image_size": 32, "pairs": 40, "fraction": 0.5}


def variants(quick: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Classifier -> ``fr fit`` arguments (without the seed's), and the data section the seeds draw from."""
    budget = argparse.Namespace(preset=None, **(QUICK if quick else BUDGET))
    runs = {variant: run_args(variant, budget) for variant in VARIANTS}
    train = synthetic_train(budget.identities, budget.per_identity)
    val = [pairs_entry("synth-lfw", "standard", budget.pairs, 0, None), pairs_entry("synth-cfpfp", "cross_pose", budget.pairs, 1, None)]
    return runs, {"init_args": {"train": train, "val_sets": val}}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = study_parser(__doc__).parse_args(argv)
    claim = CLAIMS["f2c-partial-fc"]
    plan = study_plan(claim, args)
    runs, data = variants(args.quick)
    return run_study(claim, runs, plan.seeds, lambda _a, seed: data_seed_args(data, seed), plan.command, args.out_dir, plan.tag, jobs=plan.jobs)


if __name__ == "__main__":
    main()
