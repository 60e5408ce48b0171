"""Every v2 study's claim and decision rule, declared here before the study's first reported run.

A claim is committed before its study runs on the reported seeds (``experiments.study``
refuses otherwise) and never edited afterwards: a changed design is a new claim with a new name.
``python -m experiments.report`` checks that each run file's commit already declared its claim
as it stands here, and computes the verdicts from the run files.
"""

from __future__ import annotations

from experiments.protocol import Claim, Endpoint, Guard

_LOWRES_16 = "val/synth-lowres@16/acc"
_LOWRES_FULL = "val/synth-lowres@full/acc"

CLAIMS: dict[str, Claim] = {
    claim.name: claim
    for claim in (
        Claim(
            name="lowres-recipe",
            statement=(
                "`fr fit --config recipes/lowres.yaml`, with its shipped defaults, verifies synth-lfw pairs whose probe "
                "is degraded to 16 px (112-px scale) more accurately than the same recipe without the LowRes method "
                "(the ArcFace baseline on the recipe's own data and budget), without losing full-size accuracy."
            ),
            method="lowres",
            baseline="arcface",
            endpoints=(Endpoint(_LOWRES_16, min_gain=1.0, label="accuracy at 16 px"),),
            guards=(Guard(_LOWRES_FULL, max_drop=1.0, label="accuracy at full size"),),
            command="python -m experiments.recipe_study --study lowres-recipe",
        ),
        Claim(
            name="finetune",
            statement=(
                "Starting from a backbone pre-trained on other identities (`--model.init_args.init_from`, "
                "backbone learning rate × 0.1) beats training the same network from scratch on 200 new identities "
                "× 5 images at the same budget (10 epochs), on synth-lfw pairs of further held-out identities."
            ),
            method="finetune",
            baseline="scratch",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=3.0, label="synth-lfw accuracy"),),
            command="python -m experiments.finetune_study",
        ),
    )
}
