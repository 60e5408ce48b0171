"""Tests of the verification protocol: hand-computed goldens, an independent slow reference, plots."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from fr_lightning.eval import (
    ACC_THRESHOLDS,
    VAL_THRESHOLDS,
    bar_plot,
    evaluate_pairs,
    flip_sum_embeddings,
    fold_slices,
    line_plot,
    pair_scores,
    roc_auc,
    roc_curve,
    roc_plot,
    tar_at_far,
    tar_key,
    threshold_at_far,
)


def pairs_at_distances(dists: list[float]) -> np.ndarray:
    """2-D unit embeddings ``[2N, 2]`` whose pair i lies at squared-L2 distance ``dists[i]``.

    First member (1, 0); second at angle theta with cos(theta) = 1 - d/2, so |e1 - e2|^2 = d up
    to rounding. Every hand-case distance ends in ...5 at the fourth decimal, half-way between
    grid points of both threshold grids (step 0.01 and 0.001), so rounding never flips a decision.
    """
    rows = []
    for d in dists:
        c = 1.0 - d / 2.0
        rows += [[1.0, 0.0], [c, math.sqrt(max(0.0, 1.0 - c * c))]]
    return np.array(rows)


# --------------------------------------------------------------------------------------------
# Hand case H: 7 pairs, 2 folds -> uneven contiguous folds of 4 and 3 pairs (7 % 2 = 1: the
# first fold gets the extra pair).
#   fold 0: (0.3055, same) (0.9055, same) (0.6055, diff) (1.5055, diff)
#   fold 1: (0.4055, same) (1.2055, diff) (0.7055, same)
HAND_D = [0.3055, 0.9055, 0.6055, 1.5055, 0.4055, 1.2055, 0.7055]
HAND_SAME = [True, True, False, False, True, False, True]
# Accuracy (predict same when d < t; t on the 0.01 grid):
#   test fold 0, train = fold 1 (same .4055 .7055, diff 1.2055):
#     t <= 0.40: 1/3   0.41..0.70: 2/3   0.71..1.20: 3/3   >= 1.21: 2/3   -> best t = 0.71
#     fold 0 at 0.71: .3055 S ok, .9055 S missed, .6055 D accepted, 1.5055 D ok -> 2/4 = 0.5
#   test fold 1, train = fold 0 (same .3055 .9055, diff .6055 1.5055):
#     t <= 0.30: 2/4   0.31..0.60: 3/4   0.61..0.90: 2/4   0.91..1.50: 3/4   >= 1.51: 2/4
#     first maximum -> t = 0.31 (the last maximum, 1.50, would give 2/3 instead)
#     fold 1 at 0.31: .4055 S missed, 1.2055 D ok, .7055 S missed -> 1/3
#   acc = (1/2 + 1/3) / 2 = 5/12; population std = |1/2 - 1/3| / 2 = 1/12; threshold = 0.51
# VAL@FAR=1e-3 (t on the 0.001 grid):
#   test fold 0, train diffs {1.2055}: FAR = 0 for t <= 1.205, 1 for t >= 1.206.
#     plateaus -> (FAR 0, t 1.205), (FAR 1, t 3.999); t* = 1.205 + 1e-3 * (3.999 - 1.205) = 1.207794
#     fold 0: both same < t* -> VAL 1; diff .6055 < t* -> FAR 1/2
#   test fold 1, train diffs {.6055, 1.5055}: FAR 0 (t <= .605), 1/2 (.606..1.505), 1 (>= 1.506)
#     plateaus -> (0, .605), (.5, 1.505), (1, 3.999); t* = .605 + (1e-3 / .5) * .9 = .6068
#     fold 1: .4055 accepted, .7055 not -> VAL 1/2; 1.2055 rejected -> FAR 0
#   val = 3/4, val_std = 1/4, far = 1/4, val_threshold = (1.207794 + .6068) / 2 = .907297
# --------------------------------------------------------------------------------------------


def test_hand_case_two_uneven_folds() -> None:
    m = evaluate_pairs(pairs_at_distances(HAND_D), HAND_SAME, n_folds=2)
    assert m["acc"] == pytest.approx(5 / 12, abs=1e-12)
    assert m["acc_std"] == pytest.approx(1 / 12, abs=1e-12)
    assert m["threshold"] == pytest.approx(0.51, abs=1e-12)
    assert m["val"] == pytest.approx(0.75, abs=1e-12)
    assert m["val_std"] == pytest.approx(0.25, abs=1e-12)
    assert m["far"] == pytest.approx(0.25, abs=1e-12)
    assert m["val_threshold"] == pytest.approx(0.907297, abs=1e-9)
    assert m["n_pairs"] == 7


def test_hand_case_single_fold_trains_and_tests_on_all() -> None:
    # All 7 pairs: t <= .30: 3/7, .31-.40: 4/7, .41-.60: 5/7, .61-.70: 4/7, .71-.90: 5/7,
    # .91-1.20: 6/7, 1.21-1.50: 5/7, >= 1.51: 4/7 -> t = 0.91, acc 6/7, std 0.
    m = evaluate_pairs(pairs_at_distances(HAND_D), HAND_SAME, n_folds=1)
    assert m["acc"] == pytest.approx(6 / 7, abs=1e-12)
    assert m["acc_std"] == 0.0
    assert m["threshold"] == pytest.approx(0.91, abs=1e-12)


def test_torch_and_float32_input_give_same_metrics() -> None:
    torch = pytest.importorskip("torch")
    emb = pairs_at_distances(HAND_D)
    ref = evaluate_pairs(emb, HAND_SAME, n_folds=2)
    got = evaluate_pairs(torch.tensor(emb, dtype=torch.float32), torch.tensor(HAND_SAME), n_folds=2)
    for key in ("acc", "acc_std", "threshold", "val", "val_std", "far"):
        assert got[key] == pytest.approx(ref[key], abs=1e-5)


def test_fold_slices_contiguous_and_uneven() -> None:
    folds = fold_slices(23, 10)  # 23 % 10 = 3 -> three folds of 3, seven of 2
    assert [f.stop - f.start for f in folds] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert folds[0].start == 0 and folds[-1].stop == 23
    assert all(a.stop == b.start for a, b in zip(folds, folds[1:]))
    assert fold_slices(20, 10) == [slice(2 * i, 2 * i + 2) for i in range(10)]
    assert fold_slices(5, 1) == [slice(0, 5)]
    with pytest.raises(ValueError):
        fold_slices(3, 10)


def test_far_plateaus_collapse_to_largest_threshold() -> None:
    # 10 folds of 2 pairs: fold f = (0.2055 same, d_f = 1.0055 + 0.2 f diff).
    # Training FAR (9 diffs) is 0 up to the smallest training diff, then steps by 1/9: long
    # plateaus, so the raw FAR curve has many duplicate x values (a duplicate-x spline rejects it).
    #   f = 0: plateaus (0, 1.205), (1/9, 1.405) -> t* = 1.205 + 9e-3 * 0.2 = 1.2068
    #   f = 1: plateaus (0, 1.005), (1/9, 1.405) -> t* = 1.005 + 9e-3 * 0.4 = 1.0086
    #   f >= 2: plateaus (0, 1.005), (1/9, 1.205) -> t* = 1.005 + 9e-3 * 0.2 = 1.0068
    # VAL = 1 in every fold (0.2055 < t*); FAR = 1 only in fold 0 (1.0055 < 1.2068) -> 0.1.
    # Collapsing to the smallest threshold instead would give t* ~ 0.009 and VAL = 0.
    d, same = [], []
    for f in range(10):
        d += [0.2055, 1.0055 + 0.2 * f]
        same += [True, False]
    m = evaluate_pairs(pairs_at_distances(d), same, n_folds=10)
    assert m["val"] == pytest.approx(1.0, abs=1e-12)
    assert m["val_std"] == pytest.approx(0.0, abs=1e-12)
    assert m["far"] == pytest.approx(0.1, abs=1e-12)
    assert m["val_threshold"] == pytest.approx((1.2068 + 1.0086 + 8 * 1.0068) / 10, abs=1e-9)
    # Accuracy: every training split is perfect from t = 0.21 on (first maximum).
    assert m["acc"] == 1.0 and m["acc_std"] == 0.0
    assert m["threshold"] == pytest.approx(0.21, abs=1e-12)


def test_threshold_at_far_direct() -> None:
    thr = np.arange(6, dtype=float)
    fars = np.array([0.0, 0.0, 0.0, 0.5, 0.5, 1.0])
    assert len(np.unique(fars)) < len(fars)  # duplicates: the insightface #2152 crash input
    # plateaus -> (0, 2), (0.5, 4), (1, 5)
    assert threshold_at_far(fars, thr, 0.25) == pytest.approx(3.0)
    assert threshold_at_far(fars, thr, 0.0) == pytest.approx(2.0)
    assert threshold_at_far(fars, thr, 0.5) == pytest.approx(4.0)
    assert threshold_at_far(fars, thr, 0.75) == pytest.approx(4.5)
    assert threshold_at_far(np.zeros(6), thr, 1e-3) == 0.0  # never reaches the target


def test_max_far_below_target_gives_threshold_zero() -> None:
    # Same pairs identical (d = 0), different pairs antipodal (d = 4 exactly): no threshold of
    # the grid (max 3.999) accepts a different pair, so training FAR is 0 everywhere < 1e-3 ->
    # threshold 0 -> nothing accepted on the test fold: VAL 0, FAR 0. Accuracy is perfect from
    # t = 0.01 on.
    rng = np.random.default_rng(0)
    emb, same = [], []
    for i in range(40):
        v = rng.normal(size=8)
        v /= np.linalg.norm(v)
        is_same = i % 3 != 0
        emb += [v, v if is_same else -v]
        same.append(is_same)
    m = evaluate_pairs(np.array(emb), same)
    assert m["val_threshold"] == 0.0
    assert m["val"] == 0.0 and m["far"] == 0.0
    assert m["acc"] == 1.0
    assert m["threshold"] == pytest.approx(0.01, abs=1e-12)
    assert m["tar@far=1e-4"] == 1.0 and m["auc"] == 1.0


def test_perfect_separation_and_chance() -> None:
    d = [0.5055 if i % 2 else 2.5055 for i in range(60)]
    same = [bool(i % 2) for i in range(60)]
    m = evaluate_pairs(pairs_at_distances(d), same)
    assert m["acc"] == 1.0 and m["acc_std"] == 0.0 and m["auc"] == 1.0

    rng = np.random.default_rng(1)
    emb = rng.normal(size=(2 * 6000, 64))
    m = evaluate_pairs(emb, rng.random(6000) < 0.5)
    assert abs(m["acc"] - 0.5) < 0.03
    assert abs(m["auc"] - 0.5) < 0.03


def test_speed_6000_pairs() -> None:
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(12000, 128))
    same = rng.random(6000) < 0.5
    evaluate_pairs(emb, same)  # warm-up
    start = time.perf_counter()
    evaluate_pairs(emb, same)
    assert time.perf_counter() - start < 1.0


def test_flip_sum_embeddings() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    flip = np.array([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0]])
    out = flip_sum_embeddings(emb, flip)
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert emb[1, 1] == 2.0  # inputs untouched


def test_input_validation() -> None:
    with pytest.raises(ValueError):
        evaluate_pairs(np.ones((5, 2)), [True, False])  # odd number of embeddings
    with pytest.raises(ValueError):
        evaluate_pairs(np.ones((6, 2)), [True, False])  # 3 pairs, 2 labels


# ---------------------------------------------------------------------------------- TAR@FAR


def test_roc_tar_and_auc_with_ties() -> None:
    # Genuine scores .9 .8 .5; impostors .8 (tied with a genuine) .3 .2 ... -.5 (10 impostors).
    # Operating points (accept score >= t):
    #   t=inf (0, 0); .9 (0, 1/3); .8 (.1, 2/3) (the tie is accepted together); .5 (.1, 1);
    #   .3 (.2, 1); ... ; -.5 (1, 1)
    pos = [0.9, 0.8, 0.5]
    neg = [0.8, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4, -0.5]
    scores = np.array(pos + neg)
    same = np.array([True] * 3 + [False] * 10)
    fpr, tpr, thr = roc_curve(scores, same)
    assert thr[0] == np.inf
    np.testing.assert_allclose(thr[1:4], [0.9, 0.8, 0.5])
    np.testing.assert_allclose(fpr[:5], [0, 0, 0.1, 0.1, 0.2])
    np.testing.assert_allclose(tpr[:5], [0, 1 / 3, 2 / 3, 1, 1])
    assert len(thr) == 13  # one point per distinct score, plus +inf
    # FAR <= 0.05 cannot include the tied .8 pair: TAR 1/3, not 2/3.
    assert tar_at_far(fpr, tpr, 0.05) == pytest.approx(1 / 3)
    assert tar_at_far(fpr, tpr, 0.0) == pytest.approx(1 / 3)
    assert tar_at_far(fpr, tpr, 0.1) == pytest.approx(1.0)
    # AUC: 0.1 * (1/3 + 2/3) / 2 + 0.9 * 1 = 0.95 = Mann-Whitney (10 + 9.5 + 9) / 30
    assert roc_auc(fpr, tpr) == pytest.approx(0.95)
    # Order of the input does not matter.
    perm = np.random.default_rng(0).permutation(len(scores))
    fpr2, tpr2, _ = roc_curve(scores[perm], same[perm])
    np.testing.assert_allclose(fpr2, fpr)
    np.testing.assert_allclose(tpr2, tpr)


def test_roc_without_impostors_or_genuines() -> None:
    fpr, tpr, _ = roc_curve([0.3, 0.1], [True, True])
    assert np.all(fpr == 0) and tpr[-1] == 1.0
    fpr, tpr, _ = roc_curve([0.3, 0.1], [False, False])
    assert np.all(tpr == 0) and fpr[-1] == 1.0


def test_tar_key() -> None:
    assert tar_key(1e-4) == "tar@far=1e-4"
    assert tar_key(1e-3) == "tar@far=1e-3"
    assert tar_key(1e-2) == "tar@far=1e-2"
    assert tar_key(2.5e-3) == "tar@far=2.5e-3"


# ---------------------------------------------------------------- independent slow reference


def _reference(emb: np.ndarray, issame: np.ndarray, n_folds: int, far_target: float) -> dict[str, float]:
    """The protocol written from docs/formats.md with plain loops over folds and thresholds."""
    n = len(issame)
    a = emb[0::2] / np.linalg.norm(emb[0::2], axis=1, keepdims=True)
    b = emb[1::2] / np.linalg.norm(emb[1::2], axis=1, keepdims=True)
    dist = np.array([sum((a[i, k] - b[i, k]) ** 2 for k in range(a.shape[1])) for i in range(n)])
    issame = np.asarray(issame, dtype=bool)

    bounds, start = [], 0
    for f in range(n_folds):
        size = n // n_folds + (1 if f < n % n_folds else 0)
        bounds.append((start, start + size))
        start += size

    def rates(t: float, idx: np.ndarray) -> tuple[float, float, float]:
        pred = dist[idx] < t
        act = issame[idx]
        tp = int(np.sum(pred & act))
        fp = int(np.sum(pred & ~act))
        tn = int(np.sum(~pred & ~act))
        n_s, n_d = int(act.sum()), int((~act).sum())
        return (tp / n_s if n_s else 0.0), (fp / n_d if n_d else 0.0), (tp + tn) / len(idx)

    accs, vals, fars = [], [], []
    for lo, hi in bounds:
        test = np.arange(lo, hi)
        train = np.array([i for i in range(n) if not lo <= i < hi])
        best_t, best_acc = None, -1.0
        for t in ACC_THRESHOLDS:
            acc = rates(t, train)[2]
            if acc > best_acc:  # strict: the first maximum is kept
                best_t, best_acc = t, acc
        accs.append(rates(best_t, test)[2])

        # FAR curve collapsed to (far, largest threshold) points, then a linear interpolation.
        xs: list[float] = []
        ys: list[float] = []
        for t in VAL_THRESHOLDS:
            far = rates(t, train)[1]
            if xs and far == xs[-1]:
                ys[-1] = t
            else:
                xs.append(far)
                ys.append(t)
        if max(xs) >= far_target:
            thr = None
            for k in range(len(xs)):
                if xs[k] == far_target:
                    thr = ys[k]
                    break
                if xs[k] < far_target < xs[k + 1]:
                    thr = ys[k] + (far_target - xs[k]) * (ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k])
                    break
        else:
            thr = 0.0
        v, fa, _ = rates(thr, test)
        vals.append(v)
        fars.append(fa)

    acc_mean = sum(accs) / len(accs)
    val_mean = sum(vals) / len(vals)
    return {
        "acc": acc_mean,
        "acc_std": math.sqrt(sum((x - acc_mean) ** 2 for x in accs) / len(accs)),
        "val": val_mean,
        "val_std": math.sqrt(sum((x - val_mean) ** 2 for x in vals) / len(vals)),
        "far": sum(fars) / len(fars),
    }


def _reference_tar(scores: np.ndarray, issame: np.ndarray, far_target: float) -> float:
    """Best TPR over thresholds at the distinct scores (accept score >= t) with FPR <= target."""
    n_s, n_d = int(issame.sum()), int((~issame).sum())
    best = 0.0
    for t in sorted(set(scores.tolist())):
        tp = sum(1 for s, y in zip(scores, issame) if s >= t and y)
        fp = sum(1 for s, y in zip(scores, issame) if s >= t and not y)
        if fp / n_d <= far_target:
            best = max(best, tp / n_s)
    return best


def _structured_pairs(seed: int, n_pairs: int, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Genuine pairs = a vector and a noisy copy (noise level varies); impostors = independent."""
    rng = np.random.default_rng(seed)
    issame = rng.random(n_pairs) < 0.5
    first = rng.normal(size=(n_pairs, dim))
    noise = rng.uniform(0.3, 1.5, size=(n_pairs, 1)) * rng.normal(size=(n_pairs, dim))
    second = np.where(issame[:, None], first + noise, rng.normal(size=(n_pairs, dim)))
    emb = np.empty((2 * n_pairs, dim))
    emb[0::2], emb[1::2] = first, second
    return emb, issame


@pytest.mark.parametrize(
    ("seed", "n_pairs", "n_folds", "far_target"),
    [(0, 157, 10, 1e-3), (1, 200, 10, 1e-2), (2, 101, 3, 0.05)],
)
def test_matches_slow_reference(seed: int, n_pairs: int, n_folds: int, far_target: float) -> None:
    emb, issame = _structured_pairs(seed, n_pairs)
    got = evaluate_pairs(emb, issame, n_folds=n_folds, far_target=far_target, tar_fars=(1e-2, 0.1))
    ref = _reference(emb, issame, n_folds, far_target)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert 0.6 < got["acc"] < 1.0  # the data has signal but is not separable
    scores = pair_scores(emb)
    for far in (1e-2, 0.1):
        assert got[tar_key(far)] == pytest.approx(_reference_tar(scores, issame, far), abs=1e-12)


# ------------------------------------------------------------------------------------ plots


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 100 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path: Path) -> None:
    emb, issame = _structured_pairs(3, 200)
    fpr, tpr, _ = roc_curve(pair_scores(emb), issame)
    out = roc_plot({"model": (fpr, tpr), "chance": (np.linspace(0, 1, 11), np.linspace(0, 1, 11))},
                   tmp_path / "sub" / "roc.png")
    assert out == tmp_path / "sub" / "roc.png" and _is_png(out)
    out = bar_plot({"g0": 0.91, "g1": 0.85, "g2": 0.88}, str(tmp_path / "bar.png"), "per group", "accuracy")
    assert isinstance(out, Path) and _is_png(out)
    out = line_plot([16, 32, 64, 112], {"base": [0.6, 0.8, 0.9, 0.95], "lowres": [0.7, 0.85, 0.92, 0.95]},
                    tmp_path / "line.png", "accuracy vs resolution", "pixels", "accuracy")
    assert _is_png(out)
    import sys

    if "matplotlib.pyplot" in sys.modules:  # nothing left open in pyplot's registry
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_best_cosine_threshold_against_brute_force() -> None:
    from fr_lightning.eval.report import best_cosine_threshold

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        scores = np.round(rng.uniform(-1, 1, n), 1)  # many ties
        same = rng.random(n) < 0.5
        t = best_cosine_threshold(scores, same)
        acc = ((scores >= t) == same).mean()
        brute = max(((scores >= c) == same).mean() for c in np.r_[scores, 2.0])
        assert acc == pytest.approx(brute)
        assert not np.any(scores == t)  # never on a score: ">=" and ">" agree
    assert best_cosine_threshold(np.array([0.9, 0.8, 0.1]), np.array([True, True, False])) == pytest.approx(0.45)


def test_verification_json_format(tmp_path: Path) -> None:
    import json

    from fr_lightning.eval.report import set_report, table_rows, write_verification_json

    metrics = {"acc": 0.9, "acc_std": 0.01, "tar@far=1e-3": 0.5, "auc": 0.95, "val": 0.4}
    report = set_report(metrics, 0.3)
    path = write_verification_json(tmp_path / "run" / "verification.json", {"lfw": report})
    data = json.loads(path.read_text())
    assert data == {"lfw": {"acc": pytest.approx(90.0), "acc_std": pytest.approx(1.0), "threshold": 0.3, "tar@far=1e-3": 50.0, "auc": 0.95}}
    assert not list(path.parent.glob(".*tmp*"))  # the temporary file was renamed
    assert table_rows({"lfw": report})[0][:4] == ["lfw", pytest.approx(90.0), pytest.approx(1.0), "90.00 ± 1.00"]


def test_roc_points_resample_on_log_far() -> None:
    from fr_lightning.tracking.media import roc_points

    fpr, tpr, _ = roc_curve(np.array([0.9, 0.8, 0.7, 0.1]), np.array([True, False, True, False]))
    x, y = roc_points(fpr, tpr, n=7, lowest=1e-6)
    assert np.allclose(x, np.linspace(-6, 0, 7))
    assert list(y) == [0.5] * 6 + [1.0]  # TAR 0.5 until FAR reaches 0.5, then 1
