"""Pair-based losses against loop-by-loop transcriptions of their formulas (float64, 1e-10, loss and
gradient) and against the authors' rules (FaceNet's semi-hard negative, CTL's centroid)."""

from __future__ import annotations

import math

import pytest
import torch

from fr_lightning.functional.pair_losses import centroid_triplet_loss, triplet_loss

TOL = 1e-10
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


# ----------------------------------------------------------------------------- references
def _sqd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return sum((a[k] - b[k]) ** 2 for k in range(len(a)))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt(sum(v[k] ** 2 for k in range(len(v))))


def ref_triplet(emb: torch.Tensor, labels: list[int], margin: float, mining: str) -> torch.Tensor:
    """Loop-by-loop FaceNet triplet loss (squared distances of L2-normalised embeddings)."""
    x = [_unit(emb[i]) for i in range(len(labels))]
    n = len(labels)
    d = [[_sqd(x[i], x[j]) if i != j else x[i][0] * 0.0 for j in range(n)] for i in range(n)]
    terms = []
    if mining == "semihard":
        for a in range(n):
            for p in range(n):
                if p == a or labels[p] != labels[a]:
                    continue
                negs = [k for k in range(n) if labels[k] != labels[a]]
                farther = [k for k in negs if float(d[a][k]) > float(d[a][p])]
                if farther:
                    k = min(farther, key=lambda k: float(d[a][k]))
                else:
                    k = max(negs, key=lambda k: float(d[a][k]))
                terms.append(torch.clamp(d[a][p] - d[a][k] + margin, min=0.0))
        return sum(terms) / len(terms)
    if mining == "hard":
        for a in range(n):
            ps = [k for k in range(n) if k != a and labels[k] == labels[a]]
            ns = [k for k in range(n) if labels[k] != labels[a]]
            if not ps or not ns:
                continue
            p = max(ps, key=lambda k: float(d[a][k]))
            k = min(ns, key=lambda k: float(d[a][k]))
            terms.append(torch.clamp(d[a][p] - d[a][k] + margin, min=0.0))
        return sum(terms) / len(terms)
    if mining == "all":
        for a in range(n):
            for p in range(n):
                if p == a or labels[p] != labels[a]:
                    continue
                for k in range(n):
                    if labels[k] == labels[a]:
                        continue
                    t = d[a][p] - d[a][k] + margin
                    if float(t) > 0:
                        terms.append(t)
        return sum(terms) / len(terms)
    raise AssertionError(mining)


def ref_ctl(feat: torch.Tensor, labels: list[int], margin: float) -> torch.Tensor:
    """Loop-by-loop CTL as the released code computes it (see the module docstring)."""
    order: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        order.setdefault(c, []).append(i)
    slots = []
    for s in range(max(len(v) for v in order.values())):
        pts, lab = [], []
        queries, cents = [], []
        for c, idx in order.items():
            if len(idx) <= s or len(idx) < 2:
                continue
            q = idx[s]
            others = [j for j in idx if j != q]
            cent = sum(feat[j] for j in others) / len(others)
            queries.append((feat[q], c))
            cents.append((cent, c))
        if len(queries) < 2:
            continue
        for v, c in queries + cents:
            pts.append(v)
            lab.append(c)
        m = len(pts)

        def dist(i: int, j: int) -> torch.Tensor:
            return torch.sqrt(torch.clamp(_sqd(pts[i], pts[j]), min=1e-12))

        terms = []
        for a in range(m):
            dp = max((dist(a, j) for j in range(m) if lab[j] == lab[a]), key=float)
            dn = min((dist(a, j) for j in range(m) if lab[j] != lab[a]), key=float)
            terms.append(torch.clamp(dp - dn + margin, min=0.0))
        slots.append(sum(terms) / m)
    return sum(slots) / len(slots)


# ----------------------------------------------------------------------------- agreement
def _batch(seed: int, p: int, k: int, d: int = 6, shuffle: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    if shuffle:
        labels = labels[torch.randperm(len(labels), generator=g)]
    # Class-structured points so that all mining branches occur.
    centers = torch.randn(p, d, generator=g, dtype=torch.float64)
    x = centers[labels] * 0.6 + torch.randn(len(labels), d, generator=g, dtype=torch.float64)
    return x, labels


def _agree(fn, ref, x: torch.Tensor, labels: torch.Tensor) -> None:
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    la = fn(a, labels)
    lb = ref(b, labels.tolist())
    assert la.dtype == torch.float64
    assert abs(float(la) - float(lb)) < TOL, (float(la), float(lb))
    assert float(lb) > 0
    (ga,) = torch.autograd.grad(la, a)
    (gb,) = torch.autograd.grad(lb, b)
    assert torch.allclose(ga, gb, atol=TOL, rtol=0), (ga - gb).abs().max()
    assert ga.abs().sum() > 0


@pytest.mark.parametrize("mining", ["semihard", "hard", "all"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_matches_reference(mining: str, seed: int) -> None:
    x, labels = _batch(seed, p=4, k=3)
    _agree(
        lambda e, y: triplet_loss(e, y, margin=0.2, mining=mining),
        lambda e, y: ref_triplet(e, y, 0.2, mining),
        x,
        labels,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("uneven", [False, True])
def test_ctl_matches_reference(seed: int, uneven: bool) -> None:
    x, labels = _batch(seed, p=4, k=4)
    if uneven:  # one class loses two samples, one keeps a single sample
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[(labels == 1).nonzero()[:2, 0]] = False
        keep[(labels == 2).nonzero()[:3, 0]] = False
        x, labels = x[keep], labels[keep]
    _agree(lambda e, y: centroid_triplet_loss(e, y, margin=0.3), lambda e, y: ref_ctl(e, y, 0.3), x, labels)


# ----------------------------------------------------------------------------- the authors' rules
def _on_circle(angles_deg: list[float]) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(t)), math.sin(math.radians(t))] for t in angles_deg], dtype=torch.float64)


def test_semihard_picks_the_closest_negative_farther_than_the_positive() -> None:
    # anchor at 0°, positive at 40°; negatives at 20° (harder than the positive: not semi-hard),
    # 60° (the semi-hard one) and 120°. Squared chord distance: 2 − 2·cos(Δ).
    x = _on_circle([0, 40, 20, 60, 120])
    labels = torch.tensor([0, 0, 1, 1, 1])
    d = lambda deg: 2 - 2 * math.cos(math.radians(deg))  # noqa: E731
    margin = 0.5
    # pairs (0,1) and (1,0): for anchor 1 (40°): negatives at 20° (d(20)), 20° away (d(20)),
    # 80° away; positive 40° away → farther negatives: 80° (the 120° point) → picks 80°.
    expected = (max(d(40) - d(60) + margin, 0) + max(d(40) - d(80) + margin, 0)) / 2
    # the negatives' own pairs (2,3),(3,2),(2,4),(4,2),(3,4),(4,3) also count: compute them by hand
    pos_pairs = [(2, 3), (3, 2), (2, 4), (4, 2), (3, 4), (4, 3)]
    ang = [0, 40, 20, 60, 120]
    extra = []
    for a, p in pos_pairs:
        dap = d(abs(ang[a] - ang[p]))
        dns = sorted(d(abs(ang[a] - ang[n])) for n in (0, 1))
        farther = [v for v in dns if v > dap]
        dan = farther[0] if farther else dns[-1]
        extra.append(max(dap - dan + margin, 0))
    expected = (expected * 2 + sum(extra)) / 8
    got = triplet_loss(x, labels, margin=margin, mining="semihard")
    assert abs(float(got) - expected) < 1e-12
    # and it is not the hardest negative's value (20°), which 'hard' mining would take
    assert abs(float(got) - float(triplet_loss(x, labels, margin=margin, mining="hard"))) > 1e-3


def test_semihard_falls_back_to_the_farthest_negative() -> None:
    # anchor 0°, positive 90°; negatives at 10° and 30°: none farther than the positive →
    # the farthest negative (30°) is used.
    x = _on_circle([0, 90, 10, 30])
    labels = torch.tensor([0, 0, 1, 1])
    d = lambda deg: 2 - 2 * math.cos(math.radians(deg))  # noqa: E731
    m = 0.2
    terms = [
        max(d(90) - d(30) + m, 0),  # a=0,p=1: negatives 10°, 30° away; farthest 30°
        max(d(90) - d(60) + m, 0),  # a=1,p=0: negatives 80°, 60° away; none > 90° → farthest 80°? no:
    ]
    # a=1 (90°): negatives at 80° and 60° away, positive 90° away → no farther one → farthest = 80°
    terms[1] = max(d(90) - d(80) + m, 0)
    # a=2 (10°), p=3 (30°): d(20); negatives 10° and 80° away → farther than 20°: 80° → picks 80°
    terms.append(max(d(20) - d(80) + m, 0))
    # a=3 (30°), p=2: d(20); negatives 30° and 60° away → closest farther: 30°
    terms.append(max(d(20) - d(30) + m, 0))
    got = triplet_loss(x, labels, margin=m, mining="semihard")
    assert abs(float(got) - sum(terms) / 4) < 1e-12


def test_ctl_leaves_the_query_out_of_its_own_centroid() -> None:
    # 2 classes x 3 images in 1-D. Class 0: 0, 1, 2; class 1: 10, 11, 30.
    feat = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    margin = 0.3
    slot_losses = []
    for s in range(3):
        q0, q1 = feat[s, 0].item(), feat[3 + s, 0].item()
        c0 = (sum(feat[:3, 0].tolist()) - q0) / 2
        c1 = (sum(feat[3:, 0].tolist()) - q1) / 2
        pts = [(q0, 0), (q1, 1), (c0, 0), (c1, 1)]
        terms = []
        for v, c in pts:
            dp = max(max(abs(v - w), 1e-6) for w, cc in pts if cc == c)
            dn = min(abs(v - w) for w, cc in pts if cc != c)
            terms.append(max(dp - dn + margin, 0))
        slot_losses.append(sum(terms) / 4)
    expected = sum(slot_losses) / 3
    got = centroid_triplet_loss(feat, labels, margin=margin)
    assert abs(float(got) - expected) < 1e-12
    # with the query inside its centroid the value differs (the rule is observable)
    wrong = []
    for s in range(3):
        q0, q1 = feat[s, 0].item(), feat[3 + s, 0].item()
        c0, c1 = sum(feat[:3, 0].tolist()) / 3, sum(feat[3:, 0].tolist()) / 3
        pts = [(q0, 0), (q1, 1), (c0, 0), (c1, 1)]
        wrong.append(
            sum(
                max(max(max(abs(v - w), 1e-6) for w, cc in pts if cc == c) - min(abs(v - w) for w, cc in pts if cc != c) + margin, 0)
                for v, c in pts
            )
            / 4
        )
    assert abs(sum(wrong) / 3 - expected) > 1e-3


def test_degenerate_batches_give_zero_with_a_graph() -> None:
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for loss in (
        triplet_loss(x, torch.tensor([0, 0, 0, 0])),
        triplet_loss(x, torch.tensor([0, 1, 2, 3]), mining="hard"),
        triplet_loss(x, torch.tensor([0, 1, 2, 3]), mining="all"),
        centroid_triplet_loss(x, torch.tensor([0, 0, 0, 0])),
        centroid_triplet_loss(x, torch.tensor([0, 1, 2, 3])),
    ):
        assert float(loss) == 0.0
        loss.backward()


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="mining"):
        triplet_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), mining="easy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        centroid_triplet_loss(torch.randn(4, 3), torch.tensor([0, 1]))
