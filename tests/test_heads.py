"""Margin heads: float64 per-sample reference loops (from the formulas in docs/methods.md) and properties.

The references below are written from the formulas, row by row with Python control flow;
they never call the heads' code. Every entry of ``HEADS`` must have cases in ``CASES``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
import yaml

from fr_lightning.heads import (
    HEADS,
    UNPG,
    AdaFace,
    AdaSin,
    ArcFace,
    CombinedMargin,
    CosFace,
    CurricularFace,
    MagFace,
    MarginHead,
    MVSoftmax,
    NormFace,
    SFace,
    SubCenterArcFace,
)

EPS = 1e-6  # heads clamp cosines to [-1 + EPS, 1 - EPS]
B, C = 8, 10
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- references


@dataclass
class Inputs:
    cos: torch.Tensor  # [B, C*K] float64 leaf
    labels: torch.Tensor
    norms: torch.Tensor  # [B] float64 leaf
    emb: torch.Tensor  # [B, D] float64 leaf, unit rows


def _f(v: Any) -> float:
    """Python float of a number or a 0-dim tensor (for the reference's control flow)."""
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def _c(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-1 + EPS, 1 - EPS)


def _arc(c: torch.Tensor, m: Any) -> torch.Tensor:
    """ArcFace target from the table: cos(θ+m), or c - m·sin m when θ + m > π."""
    theta = torch.acos(c)
    if _f(theta) + _f(m) > math.pi:
        return c - m * torch.sin(torch.as_tensor(m, dtype=c.dtype))
    return torch.cos(theta + m)


def _loop(x: Inputs, s: float, target: Callable, negative: Callable | None = None, pool: int = 1) -> torch.Tensor:
    """Scaled logits built row by row: target(i, c_y); negative(i, c_j, c_y) for j != y."""
    rows = []
    for i in range(x.cos.shape[0]):
        n_cls = x.cos.shape[1] // pool
        c = [_c(max((x.cos[i, j * pool + k] for k in range(pool)), key=_f)) for j in range(n_cls)]
        y = int(x.labels[i])
        out = list(c)
        if y >= 0:
            for j in range(n_cls):
                if j == y:
                    out[j] = target(i, c[y])
                elif negative is not None:
                    out[j] = negative(i, c[j], c[y])
        rows.append(torch.stack(out) * s)
    return torch.stack(rows)


def _valid_mean(x: Inputs) -> float | None:
    vals = [_f(_c(x.cos[i, int(y)])) for i, y in enumerate(x.labels) if y >= 0]
    return sum(vals) / len(vals) if vals else None


def ref_normface(x: Inputs, kw: dict, st: dict) -> dict:
    return {"logits": _loop(x, kw["s"], lambda i, cy: cy)}


def ref_cosface(x: Inputs, kw: dict, st: dict) -> dict:
    return {"logits": _loop(x, kw["s"], lambda i, cy: cy - kw["m"])}


def ref_arcface(x: Inputs, kw: dict, st: dict) -> dict:
    return {"logits": _loop(x, kw["s"], lambda i, cy: _arc(cy, kw["m"]))}


def ref_combined(x: Inputs, kw: dict, st: dict) -> dict:
    m1, m2, m3 = kw["m1"], kw["m2"], kw["m3"]
    return {"logits": _loop(x, kw["s"], lambda i, cy: torch.cos(m1 * torch.acos(cy) + m2) - m3)}


def ref_sphereface(x: Inputs, kw: dict, st: dict) -> dict:
    def psi(i: int, cy: torch.Tensor) -> torch.Tensor:
        mt = kw["m1"] * torch.acos(cy)
        k = math.floor(_f(mt) / math.pi)
        return (-1) ** k * torch.cos(mt) - 2 * k

    return {"logits": _loop(x, kw["s"], psi)}


def _curricular_like(x: Inputs, kw: dict, st: dict, h: float, h_p: float) -> dict:
    t = st["t"]
    mean = _valid_mean(x)
    if st["training"] and mean is not None:
        t = kw["momentum"] * mean + (1 - kw["momentum"]) * t

    def diff(cy: torch.Tensor) -> float:
        return math.sqrt((1 - _f(cy)) / 2)

    def target(i: int, cy: torch.Tensor) -> torch.Tensor:
        return _arc(cy, kw["m"] * (1 + h_p * diff(cy)))

    def negative(i: int, cj: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
        m_i = kw["m"] * (1 + h_p * diff(cy))
        if _f(cj) > math.cos(math.acos(_f(cy)) + m_i):
            return cj * (t + h * diff(cy) + cj)
        return cj

    return {"logits": _loop(x, kw["s"], target, negative), "state": {"t": t}}


def ref_curricularface(x: Inputs, kw: dict, st: dict) -> dict:
    return _curricular_like(x, kw, st, h=0.0, h_p=0.0)


def ref_adasin(x: Inputs, kw: dict, st: dict) -> dict:
    return _curricular_like(x, kw, st, h=kw["h"], h_p=kw["h_p"])


def ref_adaface(x: Inputs, kw: dict, st: dict) -> dict:
    mu, sd = st["batch_mean"], st["batch_std"]
    n = [min(max(_f(v), 0.001), 100.0) for v in x.norms]
    if st["training"]:
        mean = sum(n) / len(n)
        std = math.sqrt(sum((v - mean) ** 2 for v in n) / (len(n) - 1))
        a = kw["t_alpha"]
        mu, sd = a * mean + (1 - a) * mu, a * std + (1 - a) * sd
    z = [max(-1.0, min(1.0, kw["h"] * (v - mu) / (sd + 1e-3))) for v in n]
    m = kw["m"]

    def target(i: int, cy: torch.Tensor) -> torch.Tensor:
        theta = (torch.acos(cy) - m * z[i]).clamp(1e-3, math.pi - 1e-3)
        return torch.cos(theta) - (m * z[i] + m)

    return {"logits": _loop(x, kw["s"], target), "state": {"batch_mean": mu, "batch_std": sd}}


def ref_magface(x: Inputs, kw: dict, st: dict) -> dict:
    la, ua, lm, um = kw["l_a"], kw["u_a"], kw["l_m"], kw["u_m"]
    a = [x.norms[i].clamp(la, ua) for i in range(len(x.norms))]

    def target(i: int, cy: torch.Tensor) -> torch.Tensor:
        return _arc(cy, lm + (um - lm) * (a[i] - la) / (ua - la))

    g = kw["lambda_g"] * sum(ai / ua**2 + 1 / ai for ai in a) / len(a)
    return {"logits": _loop(x, kw["s"], target), "terms": g}


def ref_subcenter(x: Inputs, kw: dict, st: dict) -> dict:
    return {"logits": _loop(x, kw["s"], lambda i, cy: _arc(cy, kw["m"]), pool=kw["k"])}


def ref_mvsoftmax(x: Inputs, kw: dict, st: dict) -> dict:
    m, t = kw["m"], kw["t"]

    def f(cy: torch.Tensor) -> torch.Tensor:
        return cy - m if kw["margin_type"] == "am" else _arc(cy, m)

    def negative(i: int, cj: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
        if _f(cj) > _f(f(cy)):
            return (t + 1) * cj + t if kw["adaptive"] else cj + t
        return cj

    return {"logits": _loop(x, kw["s"], lambda i, cy: f(cy), negative)}


def ref_x2softmax(x: Inputs, kw: dict, st: dict) -> dict:
    return {"logits": _loop(x, kw["s"], lambda i, cy: kw["a"] * (torch.acos(cy) - kw["h"]) ** 2 + kw["k"])}


def ref_sface(x: Inputs, kw: dict, st: dict) -> dict:
    s, k, a, b = kw["s"], kw["k"], kw["a"], kw["b"]
    per_sample = []
    for i in range(x.cos.shape[0]):
        y = int(x.labels[i])
        total = x.cos.new_zeros(())
        for j in range(x.cos.shape[1]):
            cj = _c(x.cos[i, j])
            theta = math.acos(_f(cj))
            if j == y:
                total = total - 1 / (1 + math.exp(-k * (theta - a))) * s * cj
            else:
                total = total + 1 / (1 + math.exp(k * (theta - b))) * s * cj
        per_sample.append(total)
    return {"logits": _loop(x, s, lambda i, cy: cy), "per_sample": torch.stack(per_sample)}


def ref_search_softmax(x: Inputs, kw: dict, st: dict) -> dict:
    """Target probability p -> p/(A·p + 1 − A), A = a_j·e^{s·κ}: the target logit s·c_y − ln(1 − A)."""
    s, bins = kw["s"], kw.get("bins", 1)
    a = list(kw["a"]) * bins if len(kw["a"]) == 1 else list(kw["a"])
    kappa = kw["exponent"] if kw.get("exponent") is not None else (1 / 3 if bins == 1 else 1 / 2)

    def target(i: int, cy: torch.Tensor) -> torch.Tensor:
        row = [s * _f(_c(x.cos[i, j])) for j in range(x.cos.shape[1])]
        top = max(row)
        p = math.exp(s * _f(cy) - top) / sum(math.exp(v - top) for v in row)
        j = next(k for k in range(bins) if k == bins - 1 or p <= (k + 1) / bins)
        big_a = a[j] * math.exp(s * kappa)
        return cy - math.log(1 - big_a) / s

    return {"logits": _loop(x, s, target)}


def ref_unpg(x: Inputs, kw: dict, st: dict) -> dict:
    inner = kw["head"]
    logits = REFS[inner["name"]](x, inner["kwargs"], st)["logits"]
    sims = []
    for p in range(len(x.labels)):
        for q in range(p + 1, len(x.labels)):
            if x.labels[p] != x.labels[q] and x.labels[p] >= 0 and x.labels[q] >= 0:
                sims.append((x.emb[p] * x.emb[q]).sum())
    if sims:
        ordered = sorted(_f(v) for v in sims)
        q1, q3 = ordered[int(0.25 * len(ordered))], ordered[int(0.75 * len(ordered))]
        lo, hi = q1 - kw["whisker"] * (q3 - q1), q3 + kw["whisker"] * (q3 - q1)
        kept = sorted((v for v in sims if lo <= _f(v) <= hi), key=_f)
        if kept:
            extra = torch.stack(kept) * inner["kwargs"]["s"]
            logits = torch.cat([logits, extra.expand(len(logits), -1)], dim=1)
    return {"logits": logits}


REFS: dict[str, Callable[[Inputs, dict, dict], dict]] = {
    "normface": ref_normface,
    "cosface": ref_cosface,
    "arcface": ref_arcface,
    "combined": ref_combined,
    "sphereface": ref_sphereface,
    "curricularface": ref_curricularface,
    "adaface": ref_adaface,
    "magface": ref_magface,
    "subcenter": ref_subcenter,
    "mvsoftmax": ref_mvsoftmax,
    "x2softmax": ref_x2softmax,
    "sface": ref_sface,
    "adasin": ref_adasin,
    "unpg": ref_unpg,
    "search_softmax": ref_search_softmax,
}


# ----------------------------------------------------------------------------- test settings


@dataclass
class Case:
    kwargs: dict  # every constructor argument the reference needs (UNPG: {"head": {...}, "whisker": w})
    state: dict = field(default_factory=dict)  # buffer values set before the first step
    pool: int = 1  # sub-centres per class in the cosine columns


ARC_INNER = {"name": "arcface", "kwargs": {"s": 64.0, "m": 0.5}}
CASES: dict[str, list[Case]] = {
    "normface": [Case({"s": 64.0})],
    "cosface": [Case({"s": 64.0, "m": 0.4}), Case({"s": 30.0, "m": 0.35})],
    "arcface": [Case({"s": 64.0, "m": 0.5}), Case({"s": 32.0, "m": 0.3})],
    "combined": [
        Case({"s": 64.0, "m1": 1.0, "m2": 0.5, "m3": 0.0}),
        Case({"s": 64.0, "m1": 0.9, "m2": 0.4, "m3": 0.15}),
    ],
    "sphereface": [Case({"s": 64.0, "m1": 1.35}), Case({"s": 30.0, "m1": 4.0})],
    "curricularface": [
        Case({"s": 64.0, "m": 0.5, "momentum": 0.01}),
        Case({"s": 64.0, "m": 0.5, "momentum": 0.3}, state={"t": 0.35}),
    ],
    "adaface": [
        Case({"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01}),
        Case({"s": 64.0, "m": 0.4, "h": 0.8, "t_alpha": 0.2}, state={"batch_mean": 22.0, "batch_std": 6.0}),
    ],
    "magface": [Case({"s": 64.0, "l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0})],
    "subcenter": [Case({"s": 64.0, "m": 0.5, "k": 3}, pool=3)],
    "mvsoftmax": [
        Case({"s": 32.0, "m": 0.35, "t": 0.2, "margin_type": "am", "adaptive": True}),
        Case({"s": 32.0, "m": 0.5, "t": 0.3, "margin_type": "arc", "adaptive": False}),
    ],
    "x2softmax": [Case({"s": 64.0, "a": -0.9, "h": 0.0, "k": 0.65}), Case({"s": 64.0, "a": -0.7, "h": 0.2, "k": 0.8})],
    "sface": [Case({"s": 64.0, "k": 80.0, "a": 0.8, "b": 1.23}), Case({"s": 32.0, "k": 10.0, "a": 1.0, "b": 1.4})],
    "adasin": [
        Case({"s": 64.0, "m": 0.5, "h": 1.0, "h_p": 0.0, "momentum": 0.01}),
        Case({"s": 64.0, "m": 0.5, "h": 0.7, "h_p": 0.4, "momentum": 0.2}, state={"t": 0.25}),
    ],
    "search_softmax": [
        Case({"s": 32.0, "a": [-1.0], "bins": 1}),
        Case({"s": 32.0, "a": [-1.0, -0.3, 0.0, -0.05, -2.0], "bins": 5, "exponent": 0.4}),
    ],
    "unpg": [
        Case({"head": ARC_INNER, "whisker": 1.5}),
        Case({"head": {"name": "cosface", "kwargs": {"s": 64.0, "m": 0.4}}, "whisker": 0.3}),
    ],
}
#: The heads that turn cosines into logits; the pair-based ones (Triplet, CentroidTriplet) have no
#: logits and are tested in tests/test_pair_heads.py.
MARGIN_HEADS = {name: cls for name, cls in HEADS.items() if not getattr(cls, "pair_based", False)}
PARAMS = [(name, i) for name in MARGIN_HEADS for i in range(max(1, len(CASES.get(name, []))))]


def fragment(name: str) -> Path:
    """``configs/heads/<name>.yaml``, underscores of the head's name written as hyphens."""
    return ROOT / "configs" / "heads" / f"{name.replace('_', '-')}.yaml"


def case_of(name: str, i: int) -> Case:
    if name not in CASES:
        pytest.fail(f"head {name!r} in HEADS has no test settings in CASES")
    return CASES[name][i]


def build(name: str, case: Case) -> MarginHead:
    kw = dict(case.kwargs)
    if name == "unpg":
        kw["head"] = HEADS[kw["head"]["name"]](**kw["head"]["kwargs"])
    head = HEADS[name](**kw)
    target = head.head if isinstance(head, UNPG) else head
    for key, value in case.state.items():
        getattr(target, key).fill_(value)
    return head


def make_inputs(seed: int, pool: int = 1, dtype: torch.dtype = torch.float64) -> Inputs:
    """Random cosines in (-1, 1) with an easy row, a θ_y + m > π row, a hard row and a -1 row."""
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(B, C * pool, generator=g, dtype=torch.float64) * 1.9 - 0.95
    labels = torch.randint(0, C, (B,), generator=g)
    labels[1] = labels[0]  # a same-identity pair (UNPG must skip it)
    labels[2] = -1  # no positive in this shard
    cos[0, labels[0] * pool] = 0.8  # easy sample
    steps = 0.01 * torch.arange(pool, dtype=torch.float64)  # distinct sub-centres: no ties in the max
    cos[3, labels[3] * pool : labels[3] * pool + pool] = -0.97 - steps  # θ_y + m > π
    cos[3, (labels[3] + 1) % C * pool] = -0.99  # below cos(θ_y + m) but above the fallback target
    cos[4, labels[4] * pool : labels[4] * pool + pool] = 0.1 - steps  # many hard negatives
    norms = torch.rand(B, generator=g, dtype=torch.float64) * 115 + 5  # below, inside and above [10, 110]
    emb = F.normalize(torch.randn(B, 16, generator=g, dtype=torch.float64), dim=1)
    return to_dtype(Inputs(cos, labels, norms, emb), dtype)


def to_dtype(x: Inputs, dtype: torch.dtype) -> Inputs:
    """Fresh leaves (requiring grad) of the given dtype."""
    cos, norms, emb = (t.detach().to(dtype).requires_grad_() for t in (x.cos, x.norms, x.emb))
    return Inputs(cos, x.labels, norms, emb)


def head_state(head: MarginHead) -> dict:
    target = head.head if isinstance(head, UNPG) else head
    return {k: float(v) if v.numel() == 1 else v.tolist() for k, v in target.named_buffers()}


def run_head(head: MarginHead, x: Inputs) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(logits, per-sample loss or None, total loss) the way the training module combines them."""
    logits = head(x.cos, x.labels, norms=x.norms, embeddings=x.emb)
    per_sample = head.loss(x.cos, x.labels, norms=x.norms, embeddings=x.emb)
    if per_sample is None:
        total = F.cross_entropy(logits, x.labels, ignore_index=-1)
    else:
        total = per_sample.mean()
    for term in head.loss_terms(x.norms).values():
        total = total + term
    return logits, per_sample, total


def run_ref(name: str, case: Case, x: Inputs, state: dict) -> tuple[dict, torch.Tensor]:
    out = REFS[name](x, case.kwargs, state)
    if "per_sample" in out:
        total = out["per_sample"].mean()
    else:
        losses = [torch.logsumexp(row, 0) - row[int(y)] for row, y in zip(out["logits"], x.labels) if y >= 0]
        total = torch.stack(losses).mean()
    if "terms" in out:
        total = total + out["terms"]
    return out, total


def grads(total: torch.Tensor, x: Inputs) -> list[torch.Tensor]:
    leaves = [x.cos, x.norms, x.emb]
    got = torch.autograd.grad(total, leaves, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(got, leaves)]


# ----------------------------------------------------------------------------- generated tests


def test_every_head_file_registers_its_head_and_duplicates_are_refused() -> None:
    import fr_lightning.heads as heads_pkg
    from fr_lightning.heads.base import register_head

    files = {p.stem for p in Path(heads_pkg.__file__).parent.glob("*.py")} - {"__init__", "base"}
    assert files == set(HEADS), "each head file defines exactly one @register_head class named by the file"
    for name, cls in HEADS.items():
        assert cls.__module__ == f"fr_lightning.heads.{name}"
        assert getattr(heads_pkg, cls.__name__) is cls and cls.__name__ in heads_pkg.__all__
    assert register_head(ArcFace) is ArcFace  # registering the same class again is a no-op
    impostor = type("Impostor", (MarginHead,), {"__module__": "fr_lightning.heads.arcface"})
    with pytest.raises(ValueError, match="one head per file"):
        register_head(impostor)
    assert HEADS["arcface"] is ArcFace


def test_every_head_has_settings() -> None:
    assert set(MARGIN_HEADS) == set(CASES) == set(REFS), "add CASES and a reference for every margin head in HEADS"
    assert set(HEADS) - set(MARGIN_HEADS) == {"triplet", "ctl"}
    for name, cls in HEADS.items():
        assert issubclass(cls, MarginHead)
        assert fragment(name).is_file(), f"{fragment(name).relative_to(ROOT)} missing"


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_matches_float64_reference(name: str, i: int) -> None:
    """Logits, loss and gradients (cosine, norms, embeddings) equal the reference; state too."""
    case = case_of(name, i)
    head = build(name, case).double().train()
    for step in range(2):
        x = make_inputs(100 * i + step, pool=case.pool)
        state = {**head_state(head), "training": True}
        logits, per_sample, total = run_head(head, x)
        ref, ref_total = run_ref(name, case, x, state)
        torch.testing.assert_close(logits, ref["logits"], rtol=1e-6, atol=1e-6)
        if per_sample is not None:
            torch.testing.assert_close(per_sample, ref["per_sample"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(total, ref_total, rtol=1e-6, atol=1e-6)
        for got, want in zip(grads(total, x), grads(ref_total, x)):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        # Full Jacobian check through a random projection, rows labelled -1 included.
        proj = torch.randn_like(ref["logits"])
        for got, want in zip(grads((logits * proj).sum(), x), grads((ref["logits"] * proj).sum(), x)):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        for key, value in ref.get("state", {}).items():
            assert head_state(head)[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_float32_close_to_reference(name: str, i: int) -> None:
    """The float32 path (what training uses) stays close to the float64 reference."""
    case = case_of(name, i)
    head = build(name, case).train()
    x64 = make_inputs(7 + i, pool=case.pool)
    logits, _, total = run_head(head, to_dtype(x64, torch.float32))
    assert logits.dtype == torch.float32
    _, ref_total = run_ref(name, case, x64, {**head_state(build(name, case)), "training": True})
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(("name", "i"), PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_at_extremes(name: str, i: int, dtype: torch.dtype) -> None:
    """Cosines exactly ±1 (targets included) and θ + m > π: finite forward and backward."""
    case = case_of(name, i)
    head = build(name, case).train()
    x = make_inputs(3, pool=case.pool)
    cos = x.cos.detach().clone()
    cos[:, ::2] = 1.0
    cos[:, 1::4] = -1.0
    cos[5, :] = -1.0  # target at exactly -1
    cos[6, :] = 1.0  # target at exactly +1
    cos[7, :] = -0.999  # θ + m > π with every margin here
    xs = to_dtype(Inputs(cos, x.labels, x.norms, x.emb), torch.float32)
    xs.cos = cos.to(dtype).requires_grad_()
    logits, per_sample, total = run_head(head, xs)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and torch.isfinite(total)
    for g in grads(total, xs):
        assert torch.isfinite(g).all()


@pytest.mark.parametrize(("name", "i"), PARAMS)
def test_inputs_not_modified(name: str, i: int) -> None:
    case = case_of(name, i)
    head = build(name, case).train()
    x = make_inputs(11, pool=case.pool, dtype=torch.float32)
    before = [t.detach().clone() for t in (x.cos, x.labels, x.norms, x.emb)]
    _, _, total = run_head(head, x)
    total.backward()
    for old, new in zip(before, (x.cos, x.labels, x.norms, x.emb)):
        assert torch.equal(old, new.detach())


# ----------------------------------------------------------------------------- properties


def _logits(head: MarginHead, x: Inputs) -> torch.Tensor:
    return head(x.cos, x.labels, norms=x.norms, embeddings=x.emb)


def test_defaults_follow_methods_md() -> None:
    expected = {
        "normface": {"s": 64.0},
        "cosface": {"s": 64.0, "m": 0.4},
        "arcface": {"s": 64.0, "m": 0.5},
        "combined": {"s": 64.0, "m1": 1.0, "m2": 0.5, "m3": 0.0},
        "sphereface": {"s": 64.0, "m1": 1.35},
        "curricularface": {"s": 64.0, "m": 0.5, "momentum": 0.01},
        "adaface": {"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01},
        "magface": {"s": 64.0, "l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0},
        "subcenter": {"s": 64.0, "m": 0.5, "k": 3},
        "mvsoftmax": {"s": 32.0, "m": 0.35, "t": 0.2, "margin_type": "am", "adaptive": True},
        "x2softmax": {"s": 64.0, "a": -0.9, "h": 0.0, "k": 0.65},
        "sface": {"s": 64.0, "k": 80.0, "a": 0.8, "b": 1.23},
        "adasin": {"s": 64.0, "m": 0.5, "h": 1.0, "h_p": 0.0, "momentum": 0.01},
        "unpg": {"whisker": 1.5},
        "search_softmax": {"s": 32.0, "a": (-1.0,), "bins": 1, "exponent": None},
        "triplet": {"margin": 0.2, "mining": "semihard"},
        "ctl": {"margin": 0.3, "query_weight": 0.0},
    }
    assert set(expected) == set(HEADS)
    for name, cls in HEADS.items():
        params = inspect.signature(cls.__init__).parameters
        for key, value in expected[name].items():
            assert params[key].default == value, (name, key)
        for key, p in params.items():
            if key == "self":
                continue
            assert p.annotation is not inspect.Parameter.empty, (name, key)
            assert p.kind is p.POSITIONAL_OR_KEYWORD, (name, key)
            assert p.default is not p.empty or (name, key) == ("unpg", "head"), (name, key)
            assert f"{key}:" in (cls.__doc__ or ""), f"{name}: no Args line for {key}"
    assert AdaFace().batch_mean == 20.0 and AdaFace().batch_std == 100.0 and CurricularFace().t == 0.0


@pytest.mark.parametrize("margin_free", [CosFace(m=0.0), ArcFace(m=0.0), CombinedMargin(m1=1.0, m2=0.0, m3=0.0)])
def test_zero_margin_is_normface(margin_free: MarginHead) -> None:
    x = make_inputs(5, dtype=torch.float32)
    assert torch.equal(_logits(margin_free, x), _logits(NormFace(), x))


@pytest.mark.parametrize("name", [n for n in HEADS if "straight_through" in inspect.signature(HEADS[n]).parameters])
def test_straight_through(name: str) -> None:
    """Same logits as the textbook head; the target column's gradient is NormFace's (s per unit)."""
    case = CASES[name][0]
    plain = build(name, case).double()
    st = build(name, Case({**case.kwargs, "straight_through": True}, case.state, case.pool)).double()
    x = make_inputs(21, pool=case.pool)
    logits, logits_st = _logits(plain, x), _logits(st, x)
    torch.testing.assert_close(logits_st, logits, rtol=0, atol=1e-12)
    proj = torch.randn_like(logits)
    g_st = grads((logits_st * proj).sum(), x)
    g_pooled = g_st[0].reshape(B, C, case.pool).sum(dim=2)  # sub-centres: gradient of the pooled cosine
    rows = torch.nonzero(x.labels >= 0).squeeze(1)
    cols = x.labels[rows]
    torch.testing.assert_close(g_pooled[rows, cols], plain.s * proj[rows, cols], rtol=0, atol=1e-12)
    if name in {"cosface", "arcface", "combined", "sphereface", "adaface", "magface", "x2softmax"}:
        # Target-only heads: the whole Jacobian is NormFace's, and no gradient reaches the norms.
        g_norm = grads((_logits(NormFace(s=plain.s), x) * proj).sum(), x)
        torch.testing.assert_close(g_st[0], g_norm[0], rtol=0, atol=1e-12)
        assert not g_st[1].any()


def test_adasin_without_difficulty_is_curricularface() -> None:
    cur, ada = CurricularFace(), AdaSin(h=0.0, h_p=0.0)
    for step in range(4):
        x = make_inputs(40 + step, dtype=torch.float32)
        out_c, out_a = _logits(cur, x), _logits(ada, x)
        assert torch.equal(out_c, out_a)
        assert torch.equal(cur.t, ada.t)
        g_c, g_a = grads(out_c.sum(), x), grads(out_a.sum(), x)
        assert torch.equal(g_c[0], g_a[0])
    assert cur.t != 0


def test_adasin_penalty_monotonic_in_difficulty() -> None:
    """As D = sin(θ_y/2) grows: Φ and m_i never decrease, nor do hard positive negatives' logits."""
    head = AdaSin(h=0.7, h_p=0.5).eval()
    head.t.fill_(0.2)
    cos_y = torch.linspace(0.99, -0.99, 199)
    d = head.difficulty(cos_y)
    assert (d.diff() >= 0).all()
    assert (head.modulation(cos_y).diff() >= 0).all()
    assert (head.row_margin(cos_y).diff() >= 0).all()
    # Same negatives on every row (all hard once c_y <= 0.3), target in column 0.
    ys = cos_y[cos_y <= 0.3]
    negatives = torch.linspace(0.5, 0.9, C - 1)
    cos = torch.cat([ys.unsqueeze(1), negatives.expand(len(ys), -1)], dim=1)
    logits = head(cos, torch.zeros(len(ys), dtype=torch.long))
    assert (logits[:, 1:] > head.s * negatives).all()  # every negative was modulated
    assert (logits[:, 1:].diff(dim=0) >= 0).all()
    # Angular penalty on the positive (where θ_y + m_i stays below π): the angle added is m_i.
    added = torch.acos(logits[:, 0] / head.s) - torch.acos(ys)
    inside = torch.acos(ys) + head.row_margin(ys) < math.pi
    assert (added[inside].diff() >= -1e-5).all()
    # Stronger h / h_p never lowers the penalty for the same sample.
    weak = AdaSin(h=0.0, h_p=0.0).eval()
    weak.t.fill_(0.2)
    zeros = torch.zeros(len(ys), dtype=torch.long)
    assert (head(cos, zeros)[:, 1:] >= weak(cos, zeros)[:, 1:]).all()


@pytest.mark.parametrize(("margin_type", "base"), [("am", CosFace(s=32.0, m=0.35)), ("arc", ArcFace(s=32.0, m=0.35))])
@pytest.mark.parametrize("adaptive", [True, False])
def test_mvsoftmax_t0_is_base(margin_type: str, base: MarginHead, adaptive: bool) -> None:
    head = MVSoftmax(s=32.0, m=0.35, t=0.0, margin_type=margin_type, adaptive=adaptive)  # type: ignore[arg-type]
    x = make_inputs(8, dtype=torch.float32)
    assert torch.equal(_logits(head, x), _logits(base, x))


@pytest.mark.parametrize("inner", [ArcFace(), CosFace(), MagFace(), SubCenterArcFace(k=2)])
def test_unpg_without_negative_pairs_is_wrapped_head(inner: MarginHead) -> None:
    x = make_inputs(9, pool=inner.subcenters, dtype=torch.float32)
    same = torch.full_like(x.labels, 4)
    same[2] = -1
    out = UNPG(inner)(x.cos, same, norms=x.norms, embeddings=x.emb)
    assert torch.equal(out, inner(x.cos, same, norms=x.norms, embeddings=x.emb))
    assert UNPG(inner).subcenters == inner.subcenters


def test_unpg_appends_filtered_pairs() -> None:
    x = make_inputs(12, dtype=torch.float32)
    out = UNPG(ArcFace(), whisker=0.0)(x.cos, x.labels, embeddings=x.emb)
    extra = out[:, C:]
    assert extra.shape[1] > 0 and (extra == extra[:1]).all()  # same columns on every row
    assert torch.equal(out[:, :C], ArcFace()(x.cos, x.labels))


def test_stateful_heads_frozen_in_eval() -> None:
    for head in (CurricularFace(), AdaSin(), AdaFace()):
        head.eval()
        before = {k: v.clone() for k, v in head.state_dict().items()}
        x = make_inputs(13, dtype=torch.float32)
        _logits(head, x)
        assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
        assert before  # buffers are checkpointed
    assert set(AdaFace().state_dict()) == {"batch_mean", "batch_std"} and set(CurricularFace().state_dict()) == {"t"}


def test_state_update_skips_batches_without_positives() -> None:
    head = CurricularFace()
    head.t.fill_(0.3)
    x = make_inputs(14, dtype=torch.float32)
    head(x.cos, torch.full_like(x.labels, -1))
    assert float(head.t) == pytest.approx(0.3)


def test_missing_inputs_raise() -> None:
    x = make_inputs(15, dtype=torch.float32)
    for head in (AdaFace(), MagFace()):
        with pytest.raises(ValueError, match="norms"):
            head(x.cos, x.labels)
    with pytest.raises(ValueError, match="embeddings"):
        UNPG(ArcFace())(x.cos, x.labels)
    with pytest.raises(ValueError, match="softmax"):
        UNPG(SFace())
    with pytest.raises(ValueError, match="multiple"):
        SubCenterArcFace(k=3)(x.cos, x.labels)
    with pytest.raises(ValueError, match="margin_type"):
        MVSoftmax(margin_type="cos")  # type: ignore[arg-type]


def test_loss_contract() -> None:
    x = make_inputs(16, dtype=torch.float32)
    for name, cls in MARGIN_HEADS.items():
        head = build(name, CASES[name][0])
        k = head.subcenters
        cos = x.cos if k == 1 else x.cos.repeat_interleave(k, dim=1)
        per_sample = head.loss(cos, x.labels, norms=x.norms, embeddings=x.emb)
        assert (per_sample is None) == head.softmax, name
        terms = head.loss_terms(x.norms)
        assert set(terms) == ({"g"} if name == "magface" else set()), name
    assert SFace().loss(x.cos, x.labels).shape == (B,)


@pytest.mark.parametrize("name", list(HEADS))
def test_config_fragment_builds_head(name: str) -> None:
    """configs/heads/<name>.yaml parses with jsonargparse (what LightningCLI does) into the head."""
    from jsonargparse import ArgumentParser

    text = fragment(name).read_text()
    assert text.startswith("# "), "fragment opens with a comment giving the command"
    head_cfg = yaml.safe_load(text)["model"]["init_args"]["head"]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(MarginHead, "head")
    cfg = parser.parse_object({"head": head_cfg})
    head = parser.instantiate_classes(cfg).head
    assert type(head) is HEADS[name]
    for key, value in head_cfg.get("init_args", {}).items():
        if not isinstance(value, dict):
            assert getattr(head, key) == value, (name, key)
