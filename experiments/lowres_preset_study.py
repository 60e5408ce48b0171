"""LowRes on the `lowres` preset under protocol v2: the shipped fragment and the paper's loss against ArcFace.

    python -m experiments.lowres_preset_study            # 3 variants x 5 data-drawing seeds (claims lowres-preset, lowres-paper-preset)
    python -m experiments.lowres_preset_study --quick    # smoke run: tiny data, one calibration seed, seconds

Variants, on the calibrated budget of :mod:`experiments.lowres_calibration` (400 identities x 20,
6 epochs at 32 px, batches of 64, SGD at 0.05 with a 20 % warm-up, `recipes/arcface.yaml`'s
network and head):

* ``baseline`` — ArcFace alone;
* ``lowres`` — plus the callbacks of `configs/methods/lowres.yaml` (what the project ships);
* ``lowres-paper`` — plus those of `configs/methods/lowres-paper.yaml` (the paper's loss).

Evaluation: the seed's synth-lfw pairs with the probe degraded to 8, 16 and 32 px at 112-px scale
and at full size (``LowResEvaluation``). The method callbacks are read from the fragments
themselves, so the study measures what a user composes.
"""

from __future__ import annotations

from typing import Any

import yaml

from experiments.claims import CLAIMS
from experiments.lowres_calibration import BUDGET, OPTIMISER, QUICK
from experiments.preset_study import flow, pairs_entry
from experiments.seeds import data_seed_args
from experiments.study import ROOT, run_study
from experiments.study_cli import budget_overrides, study_parser, study_plan, synthetic_train

PRESET = "lowres"
#: variant -> method fragment whose callbacks it adds (None: the baseline)
FRAGMENTS: dict[str, str | None] = {
    "baseline": None,
    "lowres": "configs/methods/lowres.yaml",
    "lowres-paper": "configs/methods/lowres-paper.yaml",
}
SIZES = (8, 16, 32, 0)


def fragment_callbacks(path: str | None) -> list[dict[str, Any]]:
    """The ``trainer.callbacks`` of a method fragment (none for ``None``)."""
    if path is None:
        return []
    return list(yaml.safe_load((ROOT / path).read_text())["trainer"]["callbacks"])


def variants(quick: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Variant -> ``fr fit`` arguments (without the seed's), and the data section the seeds draw from."""
    budget = QUICK if quick else BUDGET
    train = synthetic_train(budget["identities"], budget["per_identity"], PRESET)
    val = [pairs_entry("synth-lfw", "standard", budget["pairs"], 0, PRESET)]
    sizes = [8, 0] if quick else list(SIZES)
    evaluation = {
        "class_path": "fr_lightning.eval.lowres.LowResEvaluation",
        "init_args": {"pairs_from": "synth-lfw", "max_pairs": budget["pairs"], "sizes": sizes, "identification": False, "plot": False},
    }
    shared = ["--config", str(ROOT / "recipes" / "arcface.yaml"),
              *budget_overrides(train, val, budget["batch_size"], budget["image_size"], budget["epochs"]), *OPTIMISER]
    runs = {name: [*shared, f"--trainer.callbacks={flow([*fragment_callbacks(path), evaluation])}"] for name, path in FRAGMENTS.items()}
    return runs, {"init_args": {"train": train, "val_sets": val}}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = study_parser(__doc__).parse_args(argv)
    claim = CLAIMS["lowres-preset"]
    plan = study_plan(claim, args)
    runs, data = variants(args.quick)
    also = [CLAIMS["lowres-paper-preset"]]
    return run_study(claim, runs, plan.seeds, lambda _a, seed: data_seed_args(data, seed), plan.command, args.out_dir, plan.tag, also=also, jobs=plan.jobs)


if __name__ == "__main__":
    main()
