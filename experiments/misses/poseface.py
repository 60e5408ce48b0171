"""PoseFace on `pose`: does the preset make profiles rare in training, as PoseFace assumes?

Measured without training: the yaw of every training sample the study's data module hands out
(``SyntheticSource(200, 20, preset="pose").dataset(32, hflip=True)``, the study's set at
renderer seed 0, and the same set at renderer seeds 1-4), the yaw proxy PoseFace reads from the
landmarks and the rarity weights it derives from them, and the profile yaws of the
``cross_pose`` verification pairs the study scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.misses.common import Experiment, pct

HYPOTHESIS = (
    "The `pose` preset does not make profiles rare in training: at least 5 % of the training "
    "samples PoseFace sees are profiles (|yaw| >= 45 degrees), so PoseFace's premise (profiles are "
    "rare and must be up-weighted) does not hold on this preset."
)
RULE = (
    "Share of training samples with |yaw| >= 45 degrees under the `pose` preset, pooled over the "
    "study's training set (200 identities x 20, renderer seed 0) and the same set drawn at "
    "renderer seeds 1-4 (20,000 samples): supported iff the share is > 5 %, refuted iff <= 5 %."
)

#: |yaw| from which a sample counts as a profile (degrees).
PROFILE_DEG: float = 45.0
#: Threshold of the decision rule (share of profiles).
RARE_SHARE: float = 0.05
#: The study's training set and image size (``experiments.method_preset``, study ``poseface``).
IDENTITIES, PER_IDENTITY, IMAGE_SIZE = 200, 20, 32
#: PoseFace's defaults the weights are computed with (fr_lightning.methods.poseface).
GAMMA, BINS = 0.5, 9


def training_yaw(preset: str | None, seed: int, identities: int, per_identity: int) -> tuple[np.ndarray, torch.Tensor]:
    """|yaw| in degrees and PoseFace's landmark yaw proxy of every sample of one training set."""
    from fr_lightning.data.sources.synthetic import SyntheticSource

    data = SyntheticSource(identities, per_identity, seed=seed, preset=preset).dataset(IMAGE_SIZE, hflip=True)
    yaws, landmarks = [], []
    for start in range(0, len(data), 1000):
        items = data.__getitems__(list(range(start, min(start + 1000, len(data)))))
        yaws += [float(abs(item["pose"][0])) for item in items]
        landmarks += [item["landmarks"] for item in items]
    from fr_lightning.functional.pose import yaw_proxy

    proxy = yaw_proxy(torch.from_numpy(np.stack(landmarks)).double())
    return np.asarray(yaws), proxy


def rarity_weights(proxy: torch.Tensor) -> torch.Tensor:
    """PoseFace's weights ``freq(bin)^(-gamma)`` with the histogram at its steady state (the set's own)."""
    from fr_lightning.functional.pose import PoseHistogram, pose_weights

    hist = PoseHistogram(BINS, ema=1.0)
    freq = hist.update(proxy)
    return pose_weights(proxy, freq, GAMMA).double()


def cross_pose_profile_yaw(pairs: int) -> np.ndarray:
    """|yaw| of the profile side of the study's ``synth-cfpfp`` pairs (no image is rendered)."""
    from fr_lightning.data.sources.synthetic import SyntheticPairs

    pair_set = SyntheticPairs("synth-cfpfp", "cross_pose", pairs=pairs, set_seed=1, preset="pose").build(IMAGE_SIZE)
    return np.asarray(pair_set.meta["yaw"], np.float64)


def measure(quick: bool, out_dir: Path) -> dict[str, Any]:
    """Profile shares per renderer seed (``pose`` and no preset), PoseFace's weights, cross-pose yaws."""
    seeds = [0] if quick else [0, 1, 2, 3, 4]
    identities, per_identity = (40, 10) if quick else (IDENTITIES, PER_IDENTITY)
    out: dict[str, Any] = {"seeds": seeds, "identities": identities, "per_identity": per_identity, "profile_deg": PROFILE_DEG}
    for preset in ("pose", None):
        key = preset or "none"
        per_seed, pooled, profile_w, frontal_w = [], [], [], []
        for seed in seeds:
            yaw, proxy = training_yaw(preset, seed, identities, per_identity)
            per_seed.append(float((yaw >= PROFILE_DEG).mean()))
            pooled.append(yaw)
            weights = rarity_weights(proxy).numpy()
            profile = yaw >= PROFILE_DEG
            profile_w += weights[profile].tolist()
            frontal_w += weights[~profile].tolist()
        allyaw = np.concatenate(pooled)
        out[key] = {
            "samples": int(allyaw.size),
            "share_profile": float((allyaw >= PROFILE_DEG).mean()),
            "share_profile_per_seed": per_seed,
            "share_ge_55": float((allyaw >= 55.0).mean()),
            "mean_weight_profile": float(np.mean(profile_w)) if profile_w else float("nan"),
            "mean_weight_other": float(np.mean(frontal_w)),
        }
    cross = cross_pose_profile_yaw(40 if quick else 600)
    out["cross_pose"] = {"pairs": int(cross.size), "share_profile": float((cross >= PROFILE_DEG).mean()), "min_yaw": float(cross.min())}
    return out


def decide(measured: Mapping[str, Any]) -> str:
    """The rule: supported iff the pooled `pose` share of |yaw| >= 45 degrees is > 5 %."""
    return "supported" if measured["pose"]["share_profile"] > RARE_SHARE else "refuted"


def table(measured: Mapping[str, Any]) -> list[str]:
    """Markdown rows: profile share and PoseFace's mean weights, `pose` against no preset."""
    rows = [
        "| training data | samples | \\|yaw\\| >= 45° | per renderer seed | \\|yaw\\| >= 55° | mean PoseFace weight, profiles / others |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("pose", "`pose` preset"), ("none", "no preset")):
        m = measured[key]
        seeds = ", ".join(pct(s) for s in m["share_profile_per_seed"])
        rows.append(
            f"| {label} | {m['samples']:,} | {pct(m['share_profile'])} | {seeds} | {pct(m['share_ge_55'])} "
            f"| {m['mean_weight_profile']:.2f} / {m['mean_weight_other']:.2f} |"
        )
    cross = measured["cross_pose"]
    rows += [
        "",
        f"`cross_pose` pairs (`synth-cfpfp`, {cross['pairs']} pairs): profile side with \\|yaw\\| >= 45°: "
        f"{pct(cross['share_profile'])} (smallest \\|yaw\\| {cross['min_yaw']:.1f}°).",
    ]
    return rows


EXPERIMENT = Experiment("poseface", "PoseFace on `pose`", HYPOTHESIS, RULE, measure, decide, table)
