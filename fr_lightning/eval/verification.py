"""Pair verification metrics: insightface's 10-fold protocol plus TAR@FAR from the ROC.

Everything here is plain numpy (torch tensors are accepted and converted) and vectorised over
thresholds: counts of pairs below each threshold come from ``np.searchsorted`` on sorted fold
distances, so 6,000 pairs x 4,000 thresholds x 10 folds take a few milliseconds.

The protocol (docs/formats.md, "The 10-fold verification protocol"):

* score = squared L2 distance between the L2-normalised embeddings of a pair, "same" when
  ``score < threshold`` (strict, as insightface);
* contiguous folds in file order, sized like ``sklearn.model_selection.KFold(shuffle=False)``;
* accuracy: thresholds ``np.arange(0, 4, 0.01)``, the first best threshold on the training folds
  is applied to the held-out fold; mean and population std over folds;
* VAL@FAR: thresholds ``np.arange(0, 4, 0.001)``, the threshold reaching the target FAR on the
  training folds by linear interpolation of threshold over FAR, with every FAR plateau collapsed
  to its largest threshold (insightface's spline rejects the duplicate FAR values; its issue
  #2152), or 0 when the training FAR never reaches the target.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "ACC_THRESHOLDS",
    "VAL_THRESHOLDS",
    "evaluate_pairs",
    "flip_sum_embeddings",
    "fold_slices",
    "l2_normalize",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "tar_key",
    "threshold_at_far",
]

#: Squared-L2 thresholds for the accuracy search (0, 0.01, ..., 3.99), built like insightface's.
ACC_THRESHOLDS: np.ndarray = np.arange(0, 4, 0.01)
#: Squared-L2 thresholds for the VAL@FAR search (0, 0.001, ..., 3.999).
VAL_THRESHOLDS: np.ndarray = np.arange(0, 4, 0.001)


def _as_numpy(x: Any, dtype: type | None = None) -> np.ndarray:
    """Convert a numpy array, torch tensor or sequence to a numpy array (never a view of ``x``'s storage)."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()  # bfloat16/half have no numpy equivalent
        x = x.numpy()
    return np.array(x, dtype=dtype, copy=True)


def l2_normalize(x: Any) -> np.ndarray:
    """Return the rows of ``x`` divided by their L2 norm, in float64.

    Args:
        x: ``[M, D]`` array or tensor.

    Returns:
        ``[M, D]`` float64 array; an all-zero row stays zero (as ``sklearn.preprocessing.normalize``).
    """
    x = _as_numpy(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D [M, D] array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def flip_sum_embeddings(emb: Any, emb_flip: Any) -> np.ndarray:
    """Combine the embeddings of images and their horizontal flips (protocol step 1).

    Args:
        emb: ``[M, D]`` raw embeddings of the images.
        emb_flip: ``[M, D]`` raw embeddings of the flipped images.

    Returns:
        ``[M, D]`` float64 array ``normalize(emb + emb_flip)``.
    """
    a = _as_numpy(emb, np.float64)
    b = _as_numpy(emb_flip, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    return l2_normalize(a + b)


def fold_slices(n_pairs: int, n_folds: int) -> list[slice]:
    """Contiguous fold boundaries in file order, like ``KFold(n_folds, shuffle=False)``.

    The first ``n_pairs % n_folds`` folds hold one extra pair.

    Args:
        n_pairs: number of pairs.
        n_folds: number of folds (at least 1, at most ``n_pairs``).

    Returns:
        One ``slice`` of pair indices per fold.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    if n_pairs < n_folds:
        raise ValueError(f"cannot split {n_pairs} pairs into {n_folds} folds")
    sizes = np.full(n_folds, n_pairs // n_folds, dtype=np.int64)
    sizes[: n_pairs % n_folds] += 1
    stops = np.cumsum(sizes)
    return [slice(int(stop - size), int(stop)) for size, stop in zip(sizes, stops)]


def _split_pairs(embeddings: Any) -> tuple[np.ndarray, np.ndarray]:
    """Normalise ``[2N, D]`` embeddings and return the first and second member of each pair."""
    emb = l2_normalize(embeddings)
    if emb.shape[0] % 2:
        raise ValueError(f"expected an even number of embeddings (2 per pair), got {emb.shape[0]}")
    return emb[0::2], emb[1::2]


def pair_scores(embeddings: Any) -> np.ndarray:
    """Cosine similarity of each pair (higher = more alike).

    Args:
        embeddings: ``[2N, D]``; rows ``2i`` and ``2i + 1`` form pair ``i``. Normalised here.

    Returns:
        ``[N]`` float64 cosine scores.
    """
    e1, e2 = _split_pairs(embeddings)
    return np.einsum("nd,nd->n", e1, e2)


def _check_issame(issame: Any, n_pairs: int) -> np.ndarray:
    same = _as_numpy(issame).astype(bool).reshape(-1)
    if same.shape[0] != n_pairs:
        raise ValueError(f"issame has {same.shape[0]} entries for {n_pairs} pairs")
    return same


def _safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (no same / no different pairs)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _counts_below(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of ``values`` strictly below each threshold."""
    return np.searchsorted(np.sort(values), thresholds, side="left")


def _fold_counts(
    dist: np.ndarray, same: np.ndarray, folds: list[slice], thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per fold and threshold, the same pairs and different pairs with ``dist < threshold``.

    Returns:
        ``(tp, fp)``, each ``[n_folds, n_thresholds]`` int64.
    """
    tp = np.stack([_counts_below(dist[f][same[f]], thresholds) for f in folds])
    fp = np.stack([_counts_below(dist[f][~same[f]], thresholds) for f in folds])
    return tp, fp


def _train_counts(per_fold: np.ndarray) -> np.ndarray:
    """Counts over the training folds of each split (all folds but one; all when there is one fold)."""
    if per_fold.shape[0] == 1:  # insightface's LFold: a single split trains and tests on everything
        return per_fold.copy()
    return per_fold.sum(axis=0, keepdims=True) - per_fold


def threshold_at_far(fars: np.ndarray, thresholds: np.ndarray, far_target: float) -> float:
    """The threshold where the (non-decreasing) FAR curve reaches ``far_target``.

    Each run of equal FAR values (a plateau) is collapsed to its largest threshold so the FAR
    axis is strictly increasing, then threshold is linearly interpolated as a function of FAR.
    Returns 0.0 when ``max(fars) < far_target`` (insightface's fallback).

    Args:
        fars: FAR at each threshold, non-decreasing along ``thresholds``.
        thresholds: increasing thresholds, same length as ``fars``.
        far_target: the FAR to reach.

    Returns:
        The interpolated threshold.
    """
    fars = np.asarray(fars, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if fars.size == 0 or fars.max() < far_target:
        return 0.0
    # Last index of each plateau: where the next FAR differs, plus the final element.
    last = np.r_[np.flatnonzero(np.diff(fars) != 0), fars.size - 1]
    return float(np.interp(far_target, fars[last], thresholds[last]))


def roc_curve(scores: Any, issame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of a similarity score (higher = same), one point per distinct score.

    Operating point ``k`` accepts every pair with ``score >= thresholds[k]``. ``thresholds``
    starts at ``+inf`` (accept nothing) and then runs through the distinct scores in decreasing
    order, so pairs with tied scores are always accepted together. Collinear points are kept.

    Args:
        scores: ``[N]`` similarity scores.
        issame: ``[N]`` bool, True for genuine pairs.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``[K + 1]`` for ``K`` distinct scores. A rate whose
        denominator is empty (no genuine or no impostor pairs) is 0 throughout.
    """
    s = _as_numpy(scores, np.float64).reshape(-1)
    same = _check_issame(issame, s.shape[0])
    order = np.argsort(-s, kind="stable")
    s, same = s[order], same[order]
    # Last position of each run of equal scores: an operating point includes the whole tie.
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.zeros(0, dtype=np.int64)
    tps = np.cumsum(same)[ends]
    fps = ends + 1 - tps
    tpr = _safe_div(np.r_[0, tps], same.sum())
    fpr = _safe_div(np.r_[0, fps], (~same).sum())
    return fpr, tpr, np.r_[np.inf, s[ends]]


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far_target: float) -> float:
    """TAR at a FAR target: the largest TPR among ROC points with ``FPR <= far_target``.

    Only real operating points count (no interpolation between them), so a threshold can never
    split tied scores. The ``+inf`` point of :func:`roc_curve` (FPR = TPR = 0) is always eligible.

    Args:
        fpr: false-positive rates of the ROC points.
        tpr: true-positive rates of the same points.
        far_target: largest acceptable FAR.

    Returns:
        The TAR, 0.0 when no point qualifies.
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    ok = fpr <= far_target
    return float(tpr[ok].max()) if ok.any() else 0.0


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under an ROC curve by the trapezoid rule (ties count one half, as Mann-Whitney U)."""
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tar_key(far: float) -> str:
    """Metric name of a TAR@FAR value: ``tar_key(1e-3) == "tar@far=1e-3"``."""
    mantissa, exponent = f"{far:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"tar@far={mantissa}e{int(exponent)}"


def evaluate_pairs(
    embeddings: Any,
    issame: Any,
    n_folds: int = 10,
    far_target: float = 1e-3,
    tar_fars: tuple[float, ...] = (1e-4, 1e-3, 1e-2),
) -> dict[str, float]:
    """Verification metrics of a pair list by insightface's k-fold protocol, plus TAR@FAR.

    Args:
        embeddings: ``[2N, D]`` embeddings (array or tensor); rows ``2i`` and ``2i + 1`` form
            pair ``i``. L2-normalised here (a no-op up to rounding for normalised input); use
            :func:`flip_sum_embeddings` first for the flip-sum protocol.
        issame: ``[N]`` bool, True where the pair shows one identity.
        n_folds: number of contiguous folds (1 = train and test on all pairs, as insightface).
        far_target: FAR target of the VAL metric.
        tar_fars: FAR targets of the TAR@FAR metrics from the ROC over all pairs.

    Returns:
        A dict of floats:

        * ``acc``, ``acc_std``: mean and population std of the held-out fold accuracies;
        * ``threshold``: mean of the best squared-L2 accuracy thresholds of the folds;
        * ``val``, ``val_std``, ``far``: mean and population std of the held-out VAL, and mean
          held-out FAR, at the interpolated ``far_target`` thresholds;
        * ``val_threshold``: mean of those interpolated thresholds;
        * ``tar@far=<f>`` for each ``f`` in ``tar_fars`` (named by :func:`tar_key`), and ``auc``,
          from the cosine-score ROC over all pairs (:func:`roc_curve`, :func:`tar_at_far`);
        * ``n_pairs``: N.
    """
    e1, e2 = _split_pairs(embeddings)
    n_pairs = e1.shape[0]
    same = _check_issame(issame, n_pairs)
    folds = fold_slices(n_pairs, n_folds)
    dist = np.sum(np.square(e1 - e2), axis=1)  # as insightface: not 2 - 2cos, to match its rounding

    n_same = np.array([same[f].sum() for f in folds])
    n_diff = np.array([(~same[f]).sum() for f in folds])
    n_fold = n_same + n_diff
    n_diff_tr = _train_counts(n_diff)

    # Accuracy. Integer counts of correct decisions keep argmax ties exact (first maximum wins).
    tp, fp = _fold_counts(dist, same, folds, ACC_THRESHOLDS)
    correct_tr = _train_counts(tp) + (n_diff_tr[:, None] - _train_counts(fp))
    best = np.argmax(correct_tr, axis=1)
    rows = np.arange(len(folds))
    acc = (tp[rows, best] + n_diff - fp[rows, best]) / n_fold

    # VAL@FAR.
    _, fp_v = _fold_counts(dist, same, folds, VAL_THRESHOLDS)
    far_tr = _safe_div(_train_counts(fp_v), n_diff_tr[:, None])
    val_thr = np.array([threshold_at_far(far_tr[i], VAL_THRESHOLDS, far_target) for i in rows])
    ta = np.array([np.sum((dist[f] < t) & same[f]) for f, t in zip(folds, val_thr)])
    fa = np.array([np.sum((dist[f] < t) & ~same[f]) for f, t in zip(folds, val_thr)])
    val = _safe_div(ta, n_same)
    far = _safe_div(fa, n_diff)

    # TAR@FAR over all pairs, from cosine similarity.
    fpr, tpr, _ = roc_curve(np.einsum("nd,nd->n", e1, e2), same)

    out: dict[str, float] = {
        "acc": float(acc.mean()),
        "acc_std": float(acc.std()),
        "threshold": float(ACC_THRESHOLDS[best].mean()),
        "val": float(val.mean()),
        "val_std": float(val.std()),
        "far": float(far.mean()),
        "val_threshold": float(val_thr.mean()),
    }
    for target in tar_fars:
        out[tar_key(target)] = tar_at_far(fpr, tpr, target)
    out["auc"] = roc_auc(fpr, tpr)
    out["n_pairs"] = float(n_pairs)
    return out
