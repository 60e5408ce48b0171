"""v1's method studies re-run under protocol v2: declared claim, seeds that draw the data, computed verdict.

    python -m experiments.method_study --study poseface-preset   # PoseFace on `pose`
    python -m experiments.method_study --study gabn-preset       # GABN on `bias`
    python -m experiments.method_study --study adasin-heads      # AdaSin vs CurricularFace, default faces
    python -m experiments.method_study --study gabn-preset --quick   # smoke run: tiny data, seconds

Each study keeps v1's design (``experiments.method_preset.STUDIES``: preset, verification sets,
variants, head swap, budget) and changes what v1 got wrong: every study seed (1-5) draws the
training faces and the evaluation pairs as well as the initialisation, the claim and its rule
are declared in ``experiments/claims.py`` before the first run, run files carry their
provenance, and ``python -m experiments.report`` computes the verdict. Evaluation pairs: 1,000
per set (v1: 600).
"""

from __future__ import annotations

from typing import Any

from experiments.claims import CLAIMS
from experiments.method_preset import STUDIES
from experiments.preset_study import flow, pairs_entry
from experiments.seeds import data_seed_args
from experiments.study import ROOT, run_study
from experiments.study_cli import budget_overrides, study_parser, study_plan, synthetic_train

#: v2 study (= claim) -> v1 study whose design it keeps
DESIGNS = {"poseface-preset": "poseface", "gabn-preset": "gabn", "adasin-heads": "adasin"}
PAIRS = 1000
QUICK = {"epochs": 1, "identities": 8, "per_identity": 4, "batch_size": 16, "image_size": 32}


def variants(study: str, quick: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Variant -> ``fr fit`` arguments (without the seed's), and the data section the seeds draw from."""
    design = STUDIES[DESIGNS[study]]
    budget = {**design.budget, **(QUICK if quick else {})}
    pairs = 40 if quick else PAIRS
    val = [pairs_entry(name, kind, pairs, set_seed, design.preset, **extra) for name, kind, set_seed, extra in design.sets]
    train = synthetic_train(budget["identities"], budget["per_identity"], design.preset)
    shared = ["--config", str(ROOT / "recipes" / "arcface.yaml"), *budget_overrides(train, val, budget["batch_size"], budget["image_size"], budget["epochs"])]
    runs = {}
    for variant, callbacks in design.variants.items():
        head = [f"--model.init_args.head={flow(design.heads[variant])}"] if variant in design.heads else []
        runs[variant] = [*shared, *head, f"--trainer.callbacks={flow(list(callbacks))}"]
    return runs, {"init_args": {"train": train, "val_sets": val}}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = study_parser(__doc__, "smoke run: 1 epoch of 8 identities × 4, 40 pairs, one calibration seed")
    parser.add_argument("--study", required=True, choices=sorted(DESIGNS))
    args = parser.parse_args(argv)
    claim = CLAIMS[args.study]
    plan = study_plan(claim, args)
    runs, data = variants(args.study, args.quick)
    return run_study(claim, runs, plan.seeds, lambda _a, seed: data_seed_args(data, seed), plan.command, args.out_dir, plan.tag, jobs=plan.jobs)


if __name__ == "__main__":
    main()
