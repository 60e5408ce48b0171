"""Recipe-level studies: a shipped recipe against the same recipe without its method, at the recipe's own budget.

    python -m experiments.recipe_study --study lowres-recipe             # the reported study (claim in experiments/claims.py)
    python -m experiments.recipe_study --study lowres-recipe --quick     # smoke run: tiny data, seconds, not reported
    python -m experiments.recipe_study --study lowres-recipe --seeds 101  # a calibration seed, never reported

This answers what a user who runs the recipe wants to know. The method variant is the recipe as
shipped (``fr fit --config <recipe>``); the baseline is the same command with the method
callbacks (``fr_lightning.methods.*``) taken out of ``trainer.callbacks``, so data, budget,
backbone, head and evaluation are the recipe's own. Every study seed draws the training faces,
the label noise and the evaluation pairs (:mod:`experiments.seeds`). Run files go to
``experiments/out/v2/<study>/``; ``python -m experiments.report`` computes the verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.claims import CLAIMS
from experiments.preset_study import flow
from experiments.seeds import data_seed_args
from experiments.study import ROOT, resolved_config, run_study
from experiments.study_cli import study_parser, study_plan

#: study -> the recipe it measures
RECIPES: dict[str, str] = {"lowres-recipe": "recipes/lowres.yaml"}
QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.check_val_every_n_epoch=1",
    "--data.init_args.train.init_args.num_identities=6",
    "--data.init_args.train.init_args.samples_per_identity=4",
    "--data.init_args.batch_size=12",
    "--data.init_args.num_workers=0",
]


def without_methods(callbacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``callbacks`` less the method callbacks (``fr_lightning.methods.*``)."""
    return [c for c in callbacks if not str(c.get("class_path", "")).startswith("fr_lightning.methods.")]


def variants(recipe: str, quick: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The two variants' ``fr fit`` arguments, and the recipe's resolved config."""
    base = ["--config", str(ROOT / recipe), *(QUICK if quick else [])]
    config = resolved_config(base)
    callbacks = without_methods(config["trainer"].get("callbacks") or [])
    if quick:
        pairs = [{**v, "init_args": {**v["init_args"], "pairs": 40}} for v in config["data"]["init_args"]["val_sets"]]
        base.append(f"--data.init_args.val_sets={flow(pairs)}")
        config["data"]["init_args"]["val_sets"] = pairs
    method = Path(recipe).stem
    return {"arcface": [*base, f"--trainer.callbacks={flow(callbacks)}"], method: base}, config


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = study_parser(__doc__, "smoke run: 1 epoch of 6 identities × 4, 40 pairs, seed 101")
    parser.add_argument("--study", required=True, choices=sorted(RECIPES))
    args = parser.parse_args(argv)
    claim = CLAIMS[args.study]
    plan = study_plan(claim, args)
    runs, config = variants(RECIPES[args.study], args.quick)
    return run_study(claim, runs, plan.seeds, lambda _args, seed: data_seed_args(config["data"], seed), plan.command, args.out_dir, plan.tag, jobs=plan.jobs)


if __name__ == "__main__":
    main()
