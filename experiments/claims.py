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
        Claim(
            name="pair-arcface-over-triplet",
            statement=(
                "The literature's expectation, tested: `recipes/arcface.yaml` (margin softmax over identities) verifies "
                "synth-lfw pairs more accurately than `recipes/triplet.yaml` (FaceNet triplet, semi-hard mining, no "
                "classifier) on the same faces, image size, batch size and steps (experiments/pair_study.py's budget)."
            ),
            method="arcface",
            baseline="triplet",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            command="python -m experiments.pair_study",
            study="pair",
        ),
        Claim(
            name="pair-arcface-over-ctl",
            statement=(
                "`recipes/arcface.yaml` verifies synth-lfw pairs more accurately than `recipes/ctl.yaml` (Centroid "
                "Triplet Loss, no classifier) at the same budget as above."
            ),
            method="arcface",
            baseline="ctl",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            command="python -m experiments.pair_study",
            study="pair",
        ),
        Claim(
            name="pair-triplet-aux",
            statement=(
                "Adding the FaceNet triplet term (weight 1, semi-hard) beside the ArcFace head improves synth-lfw "
                "accuracy over the same ArcFace recipe with the same identity-balanced P × K batches and no term, "
                "at the same budget, without losing cross-pose (synth-cfpfp) accuracy."
            ),
            method="arcface+triplet",
            baseline="arcface-pk",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            guards=(Guard("val/synth-cfpfp/acc", max_drop=1.0, label="synth-cfpfp accuracy"),),
            command="python -m experiments.pair_study",
            study="pair",
        ),
        Claim(
            name="coteaching",
            statement=(
                "Co-teaching with the fragment's settings (forget rate 0.4, λ 0.65, agreement weight 1), the forget "
                "rate ramped over the first 5 epochs, verifies clean synth-lfw pairs more accurately than plain ArcFace training on "
                "the `noise` preset with 40 % symmetric label noise, same data, steps and epochs."
            ),
            method="coteaching",
            baseline="baseline",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            command="python -m experiments.coteaching_study",
            study="coteaching",
        ),
        Claim(
            name="coteaching-selection",
            statement=(
                "Control: small-loss sample selection alone (co-teaching with `agreement_weight: 0`) beats plain "
                "training on the same data and budget."
            ),
            method="selection-only",
            baseline="baseline",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            command="python -m experiments.coteaching_study",
            study="coteaching",
        ),
        Claim(
            name="coteaching-agreement",
            statement=(
                "Control: the peer-agreement term alone (co-teaching with `forget_rate: 0`, no sample dropped) "
                "beats plain training on the same data and budget."
            ),
            method="agreement-only",
            baseline="baseline",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            command="python -m experiments.coteaching_study",
            study="coteaching",
        ),
        Claim(
            name="coteaching-compute",
            statement=(
                "Control for compute: co-teaching (two networks) beats plain training given twice the epochs "
                "(about the same compute) on the same data."
            ),
            method="coteaching",
            baseline="baseline-2x",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            command="python -m experiments.coteaching_study",
            study="coteaching",
        ),
        Claim(
            name="kd-preset",
            statement=(
                "Distilling from a teacher twice as wide, trained on the same identities (`configs/methods/kd.yaml`: "
                "feature, ND and calibrated logit KD), makes `recipes/arcface.yaml`'s network verify the `lowres` "
                "preset's synth-lfw pairs more accurately than the same network trained alone, same data, steps and epochs."
            ),
            method="kd",
            baseline="student",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            command="python -m experiments.kd_study",
        ),
        Claim(
            name="lowres-preset",
            statement=(
                "LowRes as `configs/methods/lowres.yaml` ships it (the classifier sees the HR rows only, the LR copy is "
                "trained through LogExp) verifies the `lowres` preset's synth-lfw pairs whose probe is degraded to 16 px "
                "(112-px scale) more accurately than the ArcFace baseline, same faces and calibrated budget "
                "(experiments/lowres_calibration.py), without losing full-size accuracy."
            ),
            method="lowres",
            baseline="baseline",
            endpoints=(Endpoint(_LOWRES_16, min_gain=1.0, label="accuracy at 16 px"),),
            guards=(Guard(_LOWRES_FULL, max_drop=1.0, label="accuracy at full size"),),
            command="python -m experiments.lowres_preset_study",
            study="lowres-preset",
        ),
        Claim(
            name="lowres-paper-preset",
            statement=(
                "LowRes with the paper's loss (`configs/methods/lowres-paper.yaml`: ½·(CE(HR) + CE(LR)) + LogExp) verifies "
                "the `lowres` preset's synth-lfw pairs whose probe is degraded to 16 px (112-px scale) more accurately "
                "than the ArcFace baseline, same faces and calibrated budget, without losing full-size accuracy."
            ),
            method="lowres-paper",
            baseline="baseline",
            endpoints=(Endpoint(_LOWRES_16, min_gain=1.0, label="accuracy at 16 px"),),
            guards=(Guard(_LOWRES_FULL, max_drop=1.0, label="accuracy at full size"),),
            command="python -m experiments.lowres_preset_study",
            study="lowres-preset",
        ),
        Claim(
            name="search-softmax-arcface",
            statement=(
                "Search-Softmax (`configs/heads/search-softmax.yaml` with LossSearch: 4 candidates per policy update, "
                "rewarded on held-out identities of its own) verifies synth-lfw pairs of default faces more accurately "
                "than ArcFace (m = 0.5) (`configs/heads/arcface.yaml`) with the same network, logit scale s = 32, data and steps "
                "(240 identities x 16, 40 px, 5 epochs), without losing synth-cfpfp accuracy."
            ),
            method="search-softmax",
            baseline="arcface",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            guards=(Guard("val/synth-cfpfp/acc", max_drop=1.0, label="synth-cfpfp accuracy"),),
            command="python -m experiments.search_study",
            study="search-softmax",
        ),
        Claim(
            name="search-softmax-cosface",
            statement=(
                "Search-Softmax (`configs/heads/search-softmax.yaml` with LossSearch: 4 candidates per policy update, "
                "rewarded on held-out identities of its own) verifies synth-lfw pairs of default faces more accurately "
                "than CosFace (m = 0.4) (`configs/heads/cosface.yaml`) with the same network, logit scale s = 32, data and steps "
                "(240 identities x 16, 40 px, 5 epochs), without losing synth-cfpfp accuracy."
            ),
            method="search-softmax",
            baseline="cosface",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            guards=(Guard("val/synth-cfpfp/acc", max_drop=1.0, label="synth-cfpfp accuracy"),),
            command="python -m experiments.search_study",
            study="search-softmax",
        ),
        Claim(
            name="f2c-partial-fc",
            statement=(
                "F²C (`F2C(pool_fraction=0.25)` with its EMA gallery and dual loaders) verifies synth-lfw pairs of default "
                "faces about as accurately as Partial FC (`PartialFC(sample_rate=0.25)`) with the same network, head, "
                "optimizer steps and images per step (200 identities x 20, 32 px): not worse by 1 point or more, "
                "and synth-cfpfp not lower by more than 1 point on average."
            ),
            method="f2c",
            baseline="partial-fc",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=-1.0, label="synth-lfw accuracy", null=-1.0),),
            guards=(Guard("val/synth-cfpfp/acc", max_drop=1.0, label="synth-cfpfp accuracy"),),
            command="python -m experiments.classifier_study",
        ),
        Claim(
            name="poseface-preset",
            statement=(
                "PoseFace as `configs/methods/poseface.yaml` ships it (pose-adaptive weights and disentangling) verifies "
                "frontal-profile pairs (synth-cfpfp) of the `pose` preset, where profiles are rare in training, more "
                "accurately than the ArcFace baseline, same data and budget, without losing frontal-frontal accuracy."
            ),
            method="poseface",
            baseline="baseline",
            endpoints=(Endpoint("val/synth-cfpfp/acc", min_gain=1.0, label="frontal-profile accuracy"),),
            guards=(Guard("val/synth-ff/acc", max_drop=1.0, label="frontal-frontal accuracy"),),
            command="python -m experiments.method_study --study poseface-preset",
        ),
        Claim(
            name="gabn-preset",
            statement=(
                "GABN (adversarial group head and attention erasing, the fragment's settings) raises the accuracy of "
                "the worst-served group on the `bias` preset (training groups 80/12/5/3 %) over the ArcFace baseline, "
                "same data and budget, without lowering the mean over the four groups."
            ),
            method="gabn",
            baseline="baseline",
            endpoints=(Endpoint("val/fairness/min", min_gain=1.0, label="worst group's accuracy"),),
            guards=(Guard("val/fairness/mean", max_drop=1.0, label="mean accuracy over groups"),),
            command="python -m experiments.method_study --study gabn-preset",
        ),
        Claim(
            name="adasin-heads",
            statement=(
                "The AdaSin head (a reconstruction, s = 32, published defaults) verifies synth-lfw pairs more accurately "
                "than CurricularFace (s = 32), the head it extends, on default faces at the same budget."
            ),
            method="adasin",
            baseline="curricularface",
            endpoints=(Endpoint("val/synth-lfw/acc", min_gain=1.0, label="synth-lfw accuracy"),),
            guards=(Guard("val/synth-cfpfp/acc", max_drop=1.0, label="synth-cfpfp accuracy"),),
            command="python -m experiments.method_study --study adasin-heads",
        ),
    )
}
