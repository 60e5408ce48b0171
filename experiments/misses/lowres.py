"""The paper's LowRes loss on `lowres`: how much identity do the LR copies keep at 32 px?

Measured without training. The LR copies are made by the LowRes method's own path: its tiers
(``LowRes().tiers(size)``, 7 / 14 / 20 px at the 112-px reference with probabilities 0.5 / 0.3 /
0.2), ``degrade_to`` on the normalised images, then the clamp to [−1, 1] of
``LowRes.transform_batch``. Identity left in a copy is measured by a training-free proxy:
nearest-template accuracy among the identities, where a template is the mean of an identity's
HR images and every image is reduced to colour-free pixels (grey, zero mean, unit norm; the
`lowres` preset draws colour per photo). The same identities and samples are rendered at 32 px
(the study) and at 112 px (the paper's crop size).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.misses.common import Experiment

HYPOTHESIS = (
    "At the `lowres` preset's 32-px images the LowRes tiers (7/14/20 px at the 112-px reference) "
    "shrink to about 2/4/6 px and keep almost no identity, so the paper's CE on the LR copy trains "
    "on noise; at the paper's 112 px the same tiers (7/14/20 px) keep a clearly larger share."
)
RULE = (
    "Retention of a tier = (nearest-template accuracy of its LR copies - chance) / (accuracy of "
    "the HR images - chance); the tier mixture weights it by the tier probabilities. Supported "
    "iff the mixture retention is <= 0.25 at 32 px and at 112 px at least twice the 32-px value; "
    "refuted otherwise. Inconclusive if the proxy cannot see identity at full resolution (HR "
    "accuracy below 3 x chance at 32 px)."
)

#: Decision thresholds.
MAX_RETENTION_32: float = 0.25
MIN_RATIO_112: float = 2.0
MIN_HR_OVER_CHANCE: float = 3.0
SIZES = (32, 112)


def features(images: torch.Tensor) -> np.ndarray:
    """Colour-free pixels: grey (channel mean), zero mean and unit norm per image, float64 ``[N, H·W]``."""
    grey = images.double().mean(dim=1).flatten(1)
    grey = grey - grey.mean(dim=1, keepdim=True)
    return (grey / grey.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


def accuracy(probes: np.ndarray, templates: np.ndarray, labels: np.ndarray) -> float:
    """Share of probes whose most similar template (cosine) is their own identity's."""
    t = templates / np.linalg.norm(templates, axis=1, keepdims=True)
    return float((np.argmax(probes @ t.T, axis=1) == labels).mean())


def at_size(size: int, identities: int, gallery: int, probes: int, seed: int) -> dict[str, Any]:
    """HR and per-tier nearest-template accuracy of one image size."""
    from fr_lightning.data.sources.synthetic import SyntheticSource
    from fr_lightning.data.transforms import normalize_images
    from fr_lightning.functional.lowres import degrade_to
    from fr_lightning.methods.lowres import LowRes

    method = LowRes()
    renderer = SyntheticSource(identities, gallery + probes, seed=seed, preset="lowres").renderer(size)
    ids = np.repeat(np.arange(identities), gallery + probes)
    idx = np.tile(np.arange(gallery + probes), identities)
    images = normalize_images(renderer.render(ids, idx).images)
    is_gallery = idx < gallery
    feats = features(images)
    templates = np.stack([feats[is_gallery & (ids == i)].mean(axis=0) for i in range(identities)])
    probe_images, probe_ids = images[~is_gallery], ids[~is_gallery]
    out: dict[str, Any] = {"size": size, "hr": accuracy(feats[~is_gallery], templates, probe_ids), "tiers": []}
    for ref, px, prob in zip(method.sizes, method.tiers(size), method.probs):
        degraded = degrade_to(probe_images, px)
        lr = degraded.clamp(-1.0, 1.0)  # LowRes.transform_batch: degrade, then clamp
        # Rank before the clamp: clipping the bicubic overshoot adds a few ranks that are not detail.
        rank = int(max(np.linalg.matrix_rank(degraded[k, c].double().numpy(), tol=1e-6) for k in range(4) for c in range(3)))
        out["tiers"].append({"ref": ref, "px": px, "prob": prob, "rank": rank, "acc": accuracy(features(lr), templates, probe_ids)})
    return out


def retention(result: Mapping[str, Any], chance: float) -> dict[str, Any]:
    """Per-tier retention and the tier mixture's (probability-weighted)."""
    span = result["hr"] - chance
    per = [(t["acc"] - chance) / span for t in result["tiers"]]
    total = sum(t["prob"] for t in result["tiers"])
    mix = sum(t["prob"] * r for t, r in zip(result["tiers"], per)) / total
    return {"per_tier": per, "mixture": mix}


def measure(quick: bool, out_dir: Path) -> dict[str, Any]:
    """Both image sizes on the same identities and samples (renderer seed 0)."""
    identities, gallery, probes = (30, 3, 3) if quick else (200, 5, 5)
    chance = 1.0 / identities
    sizes = {}
    for size in SIZES:
        result = at_size(size, identities, gallery, probes, seed=0)
        sizes[str(size)] = {**result, "retention": retention(result, chance)}
    return {"identities": identities, "gallery": gallery, "probes": probes, "chance": chance, "sizes": sizes}


def decide(measured: Mapping[str, Any]) -> str:
    """The rule (see RULE), with the proxy's validity guard first."""
    small, large = measured["sizes"]["32"], measured["sizes"]["112"]
    if small["hr"] < MIN_HR_OVER_CHANCE * measured["chance"]:
        return "inconclusive"
    r32, r112 = small["retention"]["mixture"], large["retention"]["mixture"]
    return "supported" if r32 <= MAX_RETENTION_32 and r112 >= MIN_RATIO_112 * r32 else "refuted"


def table(measured: Mapping[str, Any]) -> list[str]:
    """Markdown rows: per image size, HR accuracy and each tier's px, rank, accuracy and retention."""
    tiers = measured["sizes"]["32"]["tiers"]
    head = "| image size | HR | " + " | ".join(f"tier {t['ref']} (p = {t['prob']:g})" for t in tiers) + " | tier mixture retention |"
    rows = [head, "|" + "---|" * (3 + len(tiers))]
    for size in ("32", "112"):
        m = measured["sizes"][size]
        cells = " | ".join(
            f"{t['px']} px (rank {t['rank']}): {100 * t['acc']:.2f} %, retention {r:.2f}"
            for t, r in zip(m["tiers"], m["retention"]["per_tier"])
        )
        rows.append(f"| {size} px | {100 * m['hr']:.2f} % | {cells} | {m['retention']['mixture']:.2f} |")
    rows += [
        "",
        f"Nearest-template accuracy among {measured['identities']} identities (chance {100 * measured['chance']:.2f} %), "
        f"{measured['gallery']} HR images per template, {measured['probes']} probes per identity; rank = largest "
        "numerical rank (tol 1e-6) of a channel of the first 4 degraded probes before LowRes's clamp to [-1, 1], the copy's "
        "effective resolution (the clamp clips the bicubic overshoot and adds a few ranks; the accuracies use the clamped copies).",
    ]
    return rows


EXPERIMENT = Experiment("lowres", "The paper's LowRes loss on `lowres`", HYPOTHESIS, RULE, measure, decide, table)
