"""A synthetic IJB-B/C set in exactly the official (insightface) layout, from the face renderer.

Each subject has a few 1:1 templates (1-3 media of 1-3 images each) and one 1:N gallery template
(3-4 media). Every image is a rendered face placed into a *loose crop* larger than 112 px (random
size, scale, in-plane rotation and offset, reflected border), and its five landmarks are written
in crop coordinates, so the evaluation must detect-align like on the real set. Faceness scores are
drawn in [0.55, 1]. 1:1 pairs are every same-subject pair of 1:1 templates plus ``impostor_ratio``
times as many different-subject pairs; the 1:N galleries split the subjects in halves (G1/G2, or
S1/S2 for IJB-B) and the probes are all 1:1 templates, so each gallery sees mated and non-mated
probes (open set).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fr_lightning.data.synthetic import FaceRenderer

__all__ = ["SYNTH_IJB_IDENTITY_BASE", "write_synthetic_ijb"]

#: Subjects are renderer identities from here on, clear of training ids and other held-out blocks.
SYNTH_IJB_IDENTITY_BASE = 40_000_000


def _loose_crop(aligned: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Place a 112-aligned face into a larger crop with a random similarity; landmarks follow."""
    side = int(rng.integers(130, 201))
    scale = side / aligned.shape[0] * rng.uniform(0.55, 0.8)
    angle = np.deg2rad(rng.normal(0.0, 10.0))
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre_src = np.array([(aligned.shape[1] - 1) / 2, (aligned.shape[0] - 1) / 2])
    centre_dst = np.array([(side - 1) / 2, (side - 1) / 2]) + rng.normal(0.0, 0.05 * side, 2)
    matrix = np.hstack([rot, (centre_dst - rot @ centre_src)[:, None]])
    face = cv2.warpAffine(aligned, matrix, (side, side), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(aligned.shape[:2], np.float32), matrix, (side, side), flags=cv2.INTER_LINEAR)[..., None]
    # Context outside the face: the picture itself, enlarged and defocused (no mirrored faces).
    context = cv2.GaussianBlur(cv2.resize(aligned, (side, side), interpolation=cv2.INTER_LINEAR), (0, 0), side / 25)
    crop = (inside * face + (1.0 - inside) * context).round().clip(0, 255).astype(np.uint8)
    return crop, landmarks.astype(np.float64) @ rot.T + matrix[:, 2]


def write_synthetic_ijb(
    out: str | Path,
    subjects: int = 40,
    target: str = "ijbc",
    impostor_ratio: int = 20,
    seed: int = 0,
    nuisance_scale: float = 1.0,
    quality: int = 92,
) -> dict[str, int]:
    """Write ``out/meta/<t>_*.txt|csv`` and ``out/loose_crop/<n>.jpg``.

    Args:
        out: destination folder.
        subjects: number of subjects (at least 4).
        target: ``"ijbc"`` (galleries G1/G2) or ``"ijbb"`` (S1/S2).
        impostor_ratio: impostor pairs per genuine pair.
        seed: fixes faces, templates, crops and pairs.
        nuisance_scale: the renderer's nuisance strength.
        quality: JPEG quality.

    Returns:
        Counts: images, templates, pairs, genuine pairs, gallery and probe templates.
    """
    target = target.lower().replace("-", "")
    if target not in ("ijbc", "ijbb"):
        raise ValueError(f"target must be ijbc or ijbb, got {target!r}")
    if subjects < 4:
        raise ValueError(f"need at least 4 subjects, got {subjects}")
    out = Path(out)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "loose_crop").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    renderer = FaceRenderer(seed=seed, image_size=112, nuisance_scale=nuisance_scale)

    # Structure: rows of (subject, template id, media id, is_gallery).
    rows: list[tuple[int, int, int]] = []
    one_to_one: dict[int, list[int]] = {}
    gallery: dict[int, int] = {}
    tid = mid = 0
    for s in range(subjects):
        for kind in ["1:1"] * int(rng.integers(2, 5)) + ["1:N"]:
            tid += 1
            n_media = int(rng.integers(3, 5)) if kind == "1:N" else int(rng.integers(1, 4))
            for _ in range(n_media):
                mid += 1
                rows += [(s, tid, mid)] * int(rng.integers(1, 4))
            if kind == "1:N":
                gallery[s] = tid
            else:
                one_to_one.setdefault(s, []).append(tid)
    subject_of = np.array([r[0] for r in rows], np.int64)
    templates = np.array([r[1] for r in rows], np.int64)
    medias = np.array([r[2] for r in rows], np.int64)
    n = len(rows)
    names = [f"{i + 1}.jpg" for i in range(n)]
    index = np.zeros(n, np.int64)
    for s in range(subjects):  # sample index within the subject selects the nuisance
        sel = np.flatnonzero(subject_of == s)
        index[sel] = np.arange(len(sel))

    landmarks = np.empty((n, 5, 2))
    for a in range(0, n, 256):
        batch = renderer.render(SYNTH_IJB_IDENTITY_BASE + subject_of[a : a + 256], index[a : a + 256])
        for k, (img, lm) in enumerate(zip(batch.images, batch.landmarks)):
            crop, landmarks[a + k] = _loose_crop(img, lm, rng)
            if not cv2.imwrite(str(out / "loose_crop" / names[a + k]), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
                raise OSError(f"cannot write {out / 'loose_crop' / names[a + k]}")
    faceness = rng.uniform(0.55, 1.0, n)

    meta = out / "meta"
    with open(meta / f"{target}_face_tid_mid.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{name} {t} {m}\n" for name, t, m in zip(names, templates, medias))
    with open(meta / f"{target}_name_5pts_score.txt", "w", encoding="utf-8") as f:
        for name, lm, sc in zip(names, landmarks, faceness):
            f.write(name + " " + " ".join(f"{v:.3f}" for v in lm.reshape(-1)) + f" {sc:.6f}\n")

    genuine = [(a, b) for ts in one_to_one.values() for i, a in enumerate(ts) for b in ts[i + 1 :]]
    owner = {t: s for s, ts in one_to_one.items() for t in ts}
    pool = np.array(sorted(owner))
    impostor: set[tuple[int, int]] = set()
    want = min(impostor_ratio * len(genuine), len(pool) * (len(pool) - 1) // 2 - len(genuine))
    while len(impostor) < want:
        a, b = (int(v) for v in rng.choice(pool, 2, replace=False))
        if owner[a] != owner[b]:
            impostor.add((min(a, b), max(a, b)))
    pairs = sorted([(a, b, 1) for a, b in genuine] + [(a, b, 0) for a, b in impostor])
    with open(meta / f"{target}_template_pair_label.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{a} {b} {y}\n" for a, b, y in pairs)

    g_names = ("G1", "G2") if target == "ijbc" else ("S1", "S2")
    halves = {g_names[0]: range(0, subjects // 2), g_names[1]: range(subjects // 2, subjects)}

    def write_csv(path: Path, entries: list[tuple[int, int]]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("TEMPLATE_ID,SUBJECT_ID,FILENAME\n")
            for t, s in entries:
                f.writelines(f"{t},{s + 1},img/{names[i]}\n" for i in np.flatnonzero(templates == t))

    for g, subs in halves.items():
        write_csv(meta / f"{target}_1N_gallery_{g}.csv", [(gallery[s], s) for s in subs])
    write_csv(meta / f"{target}_1N_probe_mixed.csv", [(t, s) for s, ts in one_to_one.items() for t in ts])
    return {
        "images": n,
        "templates": int(tid),
        "pairs": len(pairs),
        "genuine_pairs": len(genuine),
        "gallery_templates": len(gallery),
        "probe_templates": len(owner),
    }
