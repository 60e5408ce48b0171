"""Search-Softmax (head + LossSearch) against ArcFace and CosFace under protocol v2.

    python -m experiments.search_study            # 3 heads x 5 data-drawing seeds (claims search-softmax-arcface, search-softmax-cosface)
    python -m experiments.search_study --quick    # smoke run: tiny data, one calibration seed, seconds

Keeps v1's design (``experiments.search_softmax_study``): default faces, 240 identities x 16,
40 px, 5 epochs, batches of 64, `recipes/arcface.yaml`'s network, logit scale s = 32 for every
head; ``arcface`` (`configs/heads/arcface.yaml`, m = 0.5), ``cosface`` (`configs/heads/cosface.yaml`,
m = 0.4), ``search-softmax`` (`configs/heads/search-softmax.yaml` plus ``LossSearch`` with 4
candidates per policy update, warm-up 1 epoch and candidates of a quarter epoch, scaled to this
budget). What v2 changes: each seed draws the training faces, the evaluation pairs and the
search's reward set (held-out identities of its own, never a reported set); 1,000 pairs per set
(v1: 600).
"""

from __future__ import annotations

from typing import Any

from experiments.claims import CLAIMS
from experiments.preset_study import flow, pairs_entry
from experiments.seeds import data_seed_args, drawn_val_sets
from experiments.study import ROOT, run_study
from experiments.study_cli import budget_overrides, study_parser, study_plan, synthetic_train

HEADS = ("arcface", "cosface", "search-softmax")
BUDGET = {"identities": 240, "per_identity": 16, "epochs": 5, "batch_size": 64, "image_size": 40, "pairs": 1000, "reward_pairs": 300}
QUICK = {"identities": 8, "per_identity": 4, "epochs": 1, "batch_size": 8, "image_size": 32, "pairs": 20, "reward_pairs": 20}
SEARCH = {"candidates": 4, "warmup_epochs": 1.0, "candidate_epochs": 0.25}
QUICK_SEARCH = {"candidates": 2, "warmup_epochs": 0.0, "candidate_epochs": 0.25}
SCALE = 32.0


def loss_search(budget: dict[str, int], search: dict[str, float], seed: int) -> dict[str, Any]:
    """The ``LossSearch`` callback with its reward set drawn for study seed ``seed``."""
    reward = drawn_val_sets([pairs_entry("synth-reward", "standard", budget["reward_pairs"], 7, None)], seed)[0]
    return {"class_path": "fr_lightning.callbacks.LossSearch", "init_args": {**search, "reward_set": reward}}


def variants(quick: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Head -> ``fr fit`` arguments (without the seed's), and the data section the seeds draw from."""
    budget = QUICK if quick else BUDGET
    train = synthetic_train(budget["identities"], budget["per_identity"])
    val = [pairs_entry("synth-lfw", "standard", budget["pairs"], 0, None), pairs_entry("synth-cfpfp", "cross_pose", budget["pairs"], 1, None)]
    shared = budget_overrides(train, val, budget["batch_size"], budget["image_size"], budget["epochs"])
    runs = {
        head: ["--config", str(ROOT / "recipes" / "arcface.yaml"), "--config", str(ROOT / "configs" / "heads" / f"{head}.yaml"),
               f"--model.init_args.head.init_args.s={SCALE}", *shared]
        for head in HEADS
    }  # fmt: skip
    return runs, {"init_args": {"train": train, "val_sets": val}}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = study_parser(__doc__).parse_args(argv)
    claim = CLAIMS["search-softmax-arcface"]
    plan = study_plan(claim, args)
    runs, data = variants(args.quick)
    budget, search = (QUICK, QUICK_SEARCH) if args.quick else (BUDGET, SEARCH)
    searching = runs["search-softmax"]

    def seed_args(variant_args: list[str], seed: int) -> list[str]:
        extra = [f"--trainer.callbacks={flow([loss_search(budget, search, seed)])}"] if variant_args is searching else []
        return [*data_seed_args(data, seed), *extra]

    also = [CLAIMS["search-softmax-cosface"]]
    return run_study(claim, runs, plan.seeds, seed_args, plan.command, args.out_dir, plan.tag, also=also, jobs=plan.jobs)


if __name__ == "__main__":
    main()
