"""A synthetic stand-in for TinyFace's ``Testing_Set``: natural low-resolution faces from the renderer.

Faces are rendered at 112 px (with the renderer's blur, noise and pose) and then stored *at* a
low resolution (area downsampling), so the files themselves are small like TinyFace's detections:
probes 14-24 px, gallery matches 24-48 px, distractors 14-48 px. Identities are a renderer block
of their own; file names follow TinyFace (``<identity>_<n>.png``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fr_lightning.data.synthetic import FaceRenderer

__all__ = ["SYNTH_TINYFACE_IDENTITY_BASE", "write_synthetic_tinyface"]

#: Renderer identities of the stand-in start here (clear of training ids and other held-out blocks).
SYNTH_TINYFACE_IDENTITY_BASE = 45_000_000


def write_synthetic_tinyface(
    out: str | Path,
    identities: int = 100,
    probes_per_identity: int = 2,
    matches_per_identity: int = 1,
    distractors: int = 500,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``out/Probe``, ``out/Gallery_Match`` and ``out/Gallery_Distractor`` PNGs.

    Returns:
        Counts of probes, gallery matches and distractors.
    """
    if identities < 1 or probes_per_identity < 1 or matches_per_identity < 1 or distractors < 0:
        raise ValueError("identities, probes_per_identity and matches_per_identity must be >= 1, distractors >= 0")
    out = Path(out)
    rng = np.random.default_rng(seed)
    renderer = FaceRenderer(seed=seed, image_size=112)
    per = probes_per_identity + matches_per_identity
    jobs: list[tuple[str, int, int, tuple[int, int]]] = []  # folder, renderer id, sample index, size range
    for i in range(identities):
        for k in range(per):
            folder = "Gallery_Match" if k < matches_per_identity else "Probe"
            jobs.append((folder, i, k, (24, 48) if folder == "Gallery_Match" else (14, 24)))
    jobs += [("Gallery_Distractor", identities + d, 0, (14, 48)) for d in range(distractors)]
    for folder in ("Probe", "Gallery_Match", "Gallery_Distractor"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    counts = {"Probe": 0, "Gallery_Match": 0, "Gallery_Distractor": 0}
    for a in range(0, len(jobs), 256):
        part = jobs[a : a + 256]
        batch = renderer.render(np.array([SYNTH_TINYFACE_IDENTITY_BASE + j[1] for j in part]), np.array([j[2] for j in part]))
        for (folder, ident, k, (lo, hi)), img in zip(part, batch.images):
            side = int(rng.integers(lo, hi + 1))
            small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
            name = f"{ident + 1}_{k + 1}.png" if folder != "Gallery_Distractor" else f"distractor_{ident - identities + 1}.png"
            if not cv2.imwrite(str(out / folder / name), cv2.cvtColor(small, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {out / folder / name}")
            counts[folder] += 1
    return {"probes": counts["Probe"], "gallery_match": counts["Gallery_Match"], "distractors": counts["Gallery_Distractor"]}
