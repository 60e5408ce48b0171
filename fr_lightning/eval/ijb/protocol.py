"""The IJB template protocol: image -> media -> template pooling, 1:1 scores, TAR@FAR, 1:N search.

Pooling (insightface's ``image2template_feature`` with its N / D switches):

1. per image: the flip-summed feature, L2-normalised unless ``use_norm_score`` (N1 keeps the
   norm as a quality weight), times the detector's faceness score if ``use_detector_score``;
2. per media *within a template*: the mean of its images;
3. per template: the sum of its media, then L2-normalised (an all-zero template stays zero).

Everything is one sparse [templates x images] weight matrix times the feature matrix, so there is
no Python loop over templates, images or pairs. 1:1 scores are cosines of template features,
computed block-wise from template Gram blocks (pairs sorted by their smaller template, only the
upper triangle is multiplied).

TAR@FAR follows insightface's table: the ROC is sklearn's ``roc_curve`` (one point per distinct
score, collinear points dropped, a leading (0, 0) point), and the TAR reported for a target FAR
is the TPR of the ROC point whose FPR is *closest* to the target (the highest TPR among equally
close points). This can report a point slightly above the target FAR; it is kept because it is
what published IJB numbers use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from fr_lightning.eval.verification import tar_key

__all__ = [
    "IJB_FARS",
    "identify_open_set",
    "insightface_roc",
    "pool_templates",
    "template_pair_scores",
    "tar_table",
    "verify_templates",
]

#: FAR targets of the IJB 1:1 table.
IJB_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _arr(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def pool_templates(
    features: Any,
    faceness: Any,
    templates: Any,
    medias: Any,
    use_norm_score: bool = True,
    use_detector_score: bool = True,
    select: Any | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Template features from image features (media mean, template sum, L2 normalisation).

    Args:
        features: ``[N, D]`` per-image features (already flip-summed for the F switch).
        faceness: ``[N]`` detector scores.
        templates, medias: ``[N]`` template and media id of each image.
        use_norm_score: keep each image feature's norm (N1); False normalises images first (N0).
        use_detector_score: weight each image by its faceness (D1).
        select: optional template ids to pool (default: every template, ascending).

    Returns:
        ``(template_features [T, D] float64 L2-normalised, template_ids [T] ascending)``.
    """
    x = features.detach().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    t = _arr(templates, np.int64).reshape(-1)
    m = _arr(medias, np.int64).reshape(-1)
    if x.ndim != 2 or not (len(x) == len(t) == len(m)):
        raise ValueError(f"features must be [N, D] with N = len(templates) = len(medias); got {x.shape}, {t.shape}, {m.shape}")
    w = np.ones(len(x))
    if not use_norm_score:
        norms = np.sqrt(np.einsum("nd,nd->n", x, x, dtype=np.float64))
        w /= np.where(norms > 0, norms, 1.0)
    if use_detector_score:
        f = _arr(faceness, np.float64).reshape(-1)
        if f.shape != t.shape:
            raise ValueError(f"faceness has {f.shape[0]} entries for {t.shape[0]} images")
        w *= f
    ids = np.unique(t) if select is None else np.unique(_arr(select, np.int64))
    missing = ids[~np.isin(ids, t)]
    if missing.size:
        raise ValueError(f"template {missing[0]} has no images")
    keep = np.isin(t, ids)
    rows = np.searchsorted(ids, t[keep])
    # Media are scoped to their template: key = (template row, media id).
    _, media_of, media_count = np.unique(np.stack([rows, m[keep]]), axis=1, return_inverse=True, return_counts=True)
    media_of = media_of.reshape(-1)
    weights = w[keep] / media_count[media_of]
    pool = sparse.csr_matrix((weights, (rows, np.flatnonzero(keep))), shape=(len(ids), len(x)))
    # Column blocks keep the float64 copy of a 469k-image feature matrix small.
    feats = np.concatenate([np.asarray(pool @ x[:, j : j + 64].astype(np.float64)) for j in range(0, x.shape[1], 64)], axis=1)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.where(norms > 0, norms, 1.0), ids


def template_pair_scores(
    template_features: np.ndarray, template_ids: np.ndarray, t1: Any, t2: Any, block: int = 1024, dtype: Any = np.float64
) -> np.ndarray:
    """Cosine score of each template pair, from Gram blocks (no loop over pairs).

    Args:
        template_features: ``[T, D]`` L2-normalised template features.
        template_ids: ``[T]`` ascending ids of those rows.
        t1, t2: ``[P]`` template ids of each pair.
        block: template rows per Gram block (memory ~ ``block * T * 8`` bytes).
        dtype: matrix-product precision (float32 is ~2x faster; scores then differ by ~1e-7).

    Returns:
        ``[P]`` float64 scores.
    """
    a, b = np.searchsorted(template_ids, _arr(t1, np.int64)), np.searchsorted(template_ids, _arr(t2, np.int64))
    for arr, src, name in ((a, t1, "t1"), (b, t2, "t2")):
        src = _arr(src, np.int64)
        bad = (arr >= len(template_ids)) | (template_ids[np.minimum(arr, len(template_ids) - 1)] != src)
        if bad.any():
            raise ValueError(f"pair {int(np.flatnonzero(bad)[0])}: template {int(src[bad][0])} ({name}) has no feature")
    lo, hi = np.minimum(a, b), np.maximum(a, b)  # cosine is symmetric: only the upper triangle is needed
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    feats = np.ascontiguousarray(template_features, dtype=dtype)
    n = len(feats)
    out = np.empty(len(order), np.float64)
    bounds = np.searchsorted(lo, np.arange(0, n + block, block))
    for k in range(len(bounds) - 1):
        s, e = int(bounds[k]), int(bounds[k + 1])
        if s == e:
            continue
        r0 = k * block
        gram = feats[r0 : r0 + block] @ feats[r0:].T
        out[order[s:e]] = gram.ravel()[(lo[s:e] - r0) * (n - r0) + (hi[s:e] - r0)]
    return out


def insightface_roc(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's ``roc_curve(labels, scores)`` with its default ``drop_intermediate=True``.

    One point per distinct score (highest first); points where neither the false- nor the
    true-positive count bends are dropped (first and last kept); then a (0, 0) point at ``+inf``.

    Returns:
        ``(fpr, tpr, thresholds)``.
    """
    s = _arr(scores, np.float64).reshape(-1)
    y = _arr(labels, np.int64).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.shape[0]} scores for {y.shape[0]} labels")
    if y.all() or not y.any():
        raise ValueError("the ROC needs both genuine (label 1) and impostor (label 0) pairs")
    order = np.argsort(s)[::-1]  # order inside a run of tied scores does not matter: runs are counted whole
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[ends]
    fps = ends + 1 - tps
    thr = s[ends]
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thr]


def tar_table(fpr: np.ndarray, tpr: np.ndarray, fars: tuple[float, ...] = IJB_FARS) -> dict[str, float]:
    """TAR at each FAR as insightface's table: the ROC point with the closest FPR (highest TPR on ties)."""
    out = {}
    for far in fars:
        gap = np.abs(fpr - far)
        out[tar_key(far)] = float(tpr[np.flatnonzero(gap == gap.min())[-1]])
    return out


def verify_templates(
    features: Any,
    faceness: Any,
    templates: Any,
    medias: Any,
    t1: Any,
    t2: Any,
    labels: Any,
    use_norm_score: bool = True,
    use_detector_score: bool = True,
    fars: tuple[float, ...] = IJB_FARS,
    dtype: Any = np.float64,
) -> tuple[np.ndarray, dict[str, float]]:
    """IJB 1:1 verification: pool templates, score the pairs, TAR@FAR table and AUC.

    Args:
        features: ``[N, D]`` per-image features, already flip-summed (or not: the F switch).
        faceness: ``[N]`` detector scores.
        templates, medias: ``[N]`` template / media id per image.
        t1, t2, labels: ``[P]`` pairs and labels (1 = same subject).
        use_norm_score: N1 (keep image norms) or N0 (normalise images before pooling).
        use_detector_score: D1 (weight images by faceness) or D0.
        fars: FAR targets of the table.
        dtype: Gram precision (see :func:`template_pair_scores`).

    Returns:
        ``(scores [P] float64, {"tar@far=1e-6": ..., ..., "tar@far=1e-1": ..., "auc": ...})``.
    """
    tf, tids = pool_templates(features, faceness, templates, medias, use_norm_score, use_detector_score)
    scores = template_pair_scores(tf, tids, t1, t2, dtype=dtype)
    fpr, tpr, _ = insightface_roc(scores, labels)
    metrics = tar_table(fpr, tpr, fars)
    metrics["auc"] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return scores, metrics


def identify_open_set(
    probe_features: np.ndarray,
    probe_subjects: np.ndarray,
    gallery_features: np.ndarray,
    gallery_subjects: np.ndarray,
    ranks: tuple[int, ...] = (1, 5, 10),
    fpirs: tuple[float, ...] = (1e-2, 1e-1),
    chunk: int = 4096,
) -> dict[str, float]:
    """Open-set 1:N search of probe templates against one gallery (IJB-B/C 1:N, NIST definitions).

    A probe is *mated* when its subject is in the gallery, else *non-mated*. Gallery scores are
    per subject (the best template of each subject).

    * ``rank-k``: fraction of mated probes whose subject is within the top k, i.e. fewer than k
      other subjects score strictly higher than the mate (CMC, closed set over mated probes);
    * ``tpir@fpir=f``: threshold ``th`` = the score that at most ``floor(f * non-mated)``
      non-mated probes' top scores exceed; TPIR = fraction of mated probes ranked first with a
      mate score ``> th``. NaN when there are no non-mated probes.

    Returns:
        ``{"rank-1": ..., "tpir@fpir=1e-2": ..., "mated": M, "non_mated": U}``.
    """
    gsub = np.asarray(gallery_subjects, np.int64)
    subjects, gidx = np.unique(gsub, return_inverse=True)
    psub = np.asarray(probe_subjects, np.int64)
    mate = np.searchsorted(subjects, psub)
    mated = (mate < len(subjects)) & (subjects[np.minimum(mate, len(subjects) - 1)] == psub)
    order = np.argsort(gidx, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(gidx[order])) + 1]
    g = np.asarray(gallery_features, np.float64)[order]
    top = np.empty(len(psub))
    mate_score = np.full(len(psub), -np.inf)
    better = np.zeros(len(psub), np.int64)
    for s in range(0, len(psub), chunk):
        sim = np.asarray(probe_features[s : s + chunk], np.float64) @ g.T
        per_subject = np.maximum.reduceat(sim, starts, axis=1)
        top[s : s + chunk] = per_subject.max(axis=1)
        rows = np.flatnonzero(mated[s : s + chunk])
        ms = per_subject[rows, mate[s + rows]]
        mate_score[s + rows] = ms
        better[s + rows] = (per_subject[rows] > ms[:, None]).sum(axis=1)
    out: dict[str, float] = {"mated": float(mated.sum()), "non_mated": float((~mated).sum())}
    rank = better[mated]
    for k in ranks:
        out[f"rank-{k}"] = float(np.mean(rank < k)) if rank.size else float("nan")
    non_mated_top = np.sort(top[~mated])[::-1]
    for f in fpirs:
        key = f"tpir@fpir={tar_key(f).split('=')[1]}"
        if non_mated_top.size == 0 or rank.size == 0:
            out[key] = float("nan")
            continue
        allowed = int(np.floor(f * non_mated_top.size + 1e-9))
        th = non_mated_top[allowed] if allowed < non_mated_top.size else -np.inf
        out[key] = float(np.mean((rank == 0) & (mate_score[mated] > th)))
    return out
