"""AdaSin vs CurricularFace: does the AdaSin head follow the formula in docs/methods.md?

An independent float64 transcription of the section "AdaSin (reconstruction)" of
docs/methods.md (and of the steps every margin head shares, at the top of that file), written
per row with ``math`` (``arccos`` and ``cos(θ + m)`` directly, where the head uses closed forms
without ``arccos``), is compared term by term with ``fr_lightning.heads.AdaSin`` in training
mode over several steps, on random cosines that include exact ±1, targets past ``θ + m > π``
and rows without a positive (label −1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.misses.common import Experiment

HYPOTHESIS = (
    "The AdaSin head (fr_lightning/heads/adasin.py, a reconstruction) departs from the formula in "
    "docs/methods.md: at least one term (curriculum t, difficulty D, margin m_i, positive logit, "
    "hard-negative set, hard-negative logits, easy negatives, rows without a positive) differs from "
    "an independent float64 transcription."
)
RULE = (
    "Over every configuration and step: supported iff some term's largest absolute difference "
    "between head and transcription exceeds 1e-10, or the hard-negative sets differ at a cell "
    "farther than 1e-9 from its threshold; refuted otherwise."
)

#: Largest absolute difference that still counts as agreement (float64).
TOL: float = 1e-10
#: Cells this close to the hardness threshold may fall either way by rounding; they are not counted.
TIE: float = 1e-9
#: (s, m, h, h_p, momentum): the study's setting (s = 32, defaults otherwise), the defaults, the
#: switches on and off.
CONFIGS: tuple[tuple[float, float, float, float, float], ...] = (
    (32.0, 0.5, 1.0, 0.0, 0.01),
    (64.0, 0.5, 1.0, 0.0, 0.01),
    (64.0, 0.5, 1.0, 0.5, 0.01),
    (64.0, 0.5, 0.5, 1.0, 0.3),
    (64.0, 0.5, 0.0, 0.0, 0.01),
    (64.0, 2.0, 1.0, 0.5, 0.3),
)
TERMS = ("t", "difficulty", "margin", "positive", "hard_negative", "easy_negative", "unlabelled")


def cosines(rng: np.random.Generator, rows: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Random cosines and labels: uniform cells, high target cosines, exact ±1, θ + m > π, label −1."""
    cos = rng.uniform(-1.0, 1.0, (rows, classes))
    labels = rng.integers(0, classes, rows)
    sign = np.where(rng.uniform(0.0, 1.0, rows) < 0.8, 1.0, -1.0)
    cos[np.arange(rows), labels] = sign * rng.uniform(0.0, 1.0, rows) ** 0.5
    cos[0, labels[0]], cos[1, labels[1]], cos[2, labels[2]] = 1.0, -1.0, -0.999
    cos[3, :] = 1.0
    cos[4, (labels[4] + 1) % classes] = -1.0
    labels[5:7] = -1
    return cos, labels


def transcription(cos: np.ndarray, labels: np.ndarray, t: float, s: float, m: float, h: float, h_p: float, momentum: float) -> dict[str, Any]:
    """docs/methods.md, term by term, one row at a time (training mode: t is updated first)."""
    eps = 1e-6  # step 1: clamp to [-1 + 1e-6, 1 - 1e-6]
    c = np.clip(cos, -1.0 + eps, 1.0 - eps)
    rows, classes = c.shape
    valid = [i for i in range(rows) if labels[i] >= 0]
    if valid:  # t <- momentum * mean(c_y) + (1 - momentum) * t, over rows with a positive
        t = momentum * sum(c[i, labels[i]] for i in valid) / len(valid) + (1.0 - momentum) * t
    logits = np.empty_like(c)
    hard = np.zeros(c.shape, bool)
    margin_gap = np.full(c.shape, np.inf)  # |c_j - threshold| for the tie rule
    difficulty, margin = np.zeros(rows), np.zeros(rows)
    for i in range(rows):
        if labels[i] < 0:  # rows without a positive: plain s * c_j
            logits[i] = s * c[i]
            continue
        y = labels[i]
        theta = math.acos(c[i, y])
        d = math.sin(theta / 2.0)  # D = sin(θ_y / 2)
        mi = m * (1.0 + h_p * d)  # m_i = m (1 + h_p D)
        phi = t + h * d  # Φ_i = t + h D
        difficulty[i], margin[i] = d, mi
        threshold = math.cos(theta + mi)  # hardness: c_j > cos(θ_y + m_i), no fallback
        for j in range(classes):
            if j == y:
                target = math.cos(theta + mi) if theta + mi <= math.pi else c[i, y] - mi * math.sin(mi)
                logits[i, j] = s * target
                continue
            margin_gap[i, j] = abs(c[i, j] - threshold)
            if c[i, j] > threshold:
                hard[i, j] = True
                logits[i, j] = s * c[i, j] * (phi + c[i, j])
            else:
                logits[i, j] = s * c[i, j]
    return {"t": t, "logits": logits, "hard": hard, "gap": margin_gap, "difficulty": difficulty, "margin": margin}


def head_terms(head: torch.nn.Module, cos: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The head's logits (one training step), its t afterwards, its D and m_i, and its hard set."""
    lab = torch.from_numpy(labels)
    logits = head(torch.from_numpy(cos), lab).detach().numpy()
    c = torch.from_numpy(cos).clamp(-1.0 + head.eps, 1.0 - head.eps)
    cos_y = c.gather(1, lab.clamp(min=0).unsqueeze(1)).squeeze(1)
    neg = head.negative_logits(c, cos_y, cos_y, lab).numpy()
    hard = neg != c.numpy()  # a cell is modulated iff its logit left c_j
    return {
        "t": float(head.t),
        "logits": logits,
        "hard": hard,
        "difficulty": head.difficulty(cos_y).numpy(),
        "margin": head.row_margin(cos_y).numpy(),
    }


def compare(config: tuple[float, float, float, float, float], steps: int, rows: int, classes: int, seed: int) -> dict[str, float]:
    """Largest difference per term over ``steps`` training steps of one configuration."""
    from fr_lightning.heads import AdaSin

    s, m, h, h_p, momentum = config
    head = AdaSin(s=s, m=m, h=h, h_p=h_p, momentum=momentum).double().train()
    rng = np.random.default_rng(seed)
    worst = dict.fromkeys(TERMS, 0.0) | {"hard_set_disagreements": 0.0, "hard_cells": 0.0}
    t = 0.0
    for _ in range(steps):
        cos, labels = cosines(rng, rows, classes)
        ref = transcription(cos, labels, t, s, m, h, h_p, momentum)
        got = head_terms(head, cos, labels)
        t = ref["t"]
        valid = labels >= 0
        positive = np.zeros(cos.shape, bool)
        positive[np.flatnonzero(valid), labels[valid]] = True
        negative = ~positive & valid[:, None]
        hard = ref["hard"]
        diff = np.abs(got["logits"] - ref["logits"])
        both_hard = hard & got["hard"] & negative
        both_easy = ~hard & ~got["hard"] & negative
        away = ref["gap"] > TIE
        parts = {
            "t": abs(got["t"] - ref["t"]),
            "difficulty": float(np.abs(got["difficulty"] - ref["difficulty"])[valid].max()),
            "margin": float(np.abs(got["margin"] - ref["margin"])[valid].max()),
            "positive": float(diff[positive].max()),
            "hard_negative": float(diff[both_hard].max()) if both_hard.any() else 0.0,
            "easy_negative": float(diff[both_easy].max()),
            "unlabelled": float(diff[~valid].max()) if (~valid).any() else 0.0,
        }
        for key, value in parts.items():
            worst[key] = max(worst[key], value)
        worst["hard_set_disagreements"] += float(((hard != got["hard"]) & negative & away).sum())
        worst["hard_cells"] += float((hard & negative).sum())
    return worst


def measure(quick: bool, out_dir: Path) -> dict[str, Any]:
    """Per configuration: the largest head-vs-transcription difference of every term."""
    steps, rows, classes = (2, 16, 12) if quick else (5, 64, 50)
    configs = CONFIGS[:2] if quick else CONFIGS
    results = []
    for k, config in enumerate(configs):
        s, m, h, h_p, momentum = config
        worst = compare(config, steps, rows, classes, seed=1000 + k)
        results.append({"s": s, "m": m, "h": h, "h_p": h_p, "momentum": momentum, **worst})
    return {"steps": steps, "rows": rows, "classes": classes, "tol": TOL, "tie": TIE, "configs": results}


def decide(measured: Mapping[str, Any]) -> str:
    """The rule: supported iff a term differs by more than 1e-10 or the hard sets differ away from ties."""
    for config in measured["configs"]:
        if any(config[term] > measured["tol"] for term in TERMS) or config["hard_set_disagreements"] > 0:
            return "supported"
    return "refuted"


def table(measured: Mapping[str, Any]) -> list[str]:
    """Markdown rows: one per configuration, the largest difference per term."""
    head = "| s | m | h | h_p | momentum | " + " | ".join(TERMS) + " | hard cells | hard-set disagreements |"
    rows = [head, "|" + "---|" * (7 + len(TERMS))]
    for c in measured["configs"]:
        terms = " | ".join(f"{c[term]:.1e}" for term in TERMS)
        rows.append(
            f"| {c['s']:g} | {c['m']:g} | {c['h']:g} | {c['h_p']:g} | {c['momentum']:g} | {terms} "
            f"| {int(c['hard_cells']):,} | {int(c['hard_set_disagreements'])} |"
        )
    rows += ["", f"{measured['steps']} training steps of {measured['rows']} rows × {measured['classes']} classes per configuration (float64)."]
    return rows


EXPERIMENT = Experiment("adasin", "AdaSin vs CurricularFace", HYPOTHESIS, RULE, measure, decide, table)
