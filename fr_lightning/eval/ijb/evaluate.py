"""Run the whole IJB protocol on extracted features: 1:1 table, 1:N per gallery, report and logging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fr_lightning.eval.ijb.meta import IJBSet
from fr_lightning.eval.ijb.insightface_1n import search_insightface_1n
from fr_lightning.eval.ijb.protocol import IJB_FARS, identify_open_set, insightface_roc, pool_templates, tar_table, template_pair_scores

__all__ = ["evaluate_ijb", "format_table", "log_wandb", "roc_points", "write_json"]


def roc_points(fpr: np.ndarray, tpr: np.ndarray, n: int = 200, min_fpr: float = 1e-7) -> tuple[list[float], list[float]]:
    """At most ``n`` ROC points spread evenly in log10(FPR) (for plots and JSON), highest TPR per FPR."""
    ok = fpr >= min_fpr
    f, t = fpr[ok], tpr[ok]
    if f.size == 0:
        return [], []
    grid = np.logspace(np.log10(f[0]), 0.0, n)
    idx = np.unique(np.minimum(np.searchsorted(f, grid, side="right") - 1, f.size - 1).clip(0))
    return f[idx].tolist(), t[idx].tolist()


def evaluate_ijb(
    ijb: IJBSet,
    features: np.ndarray,
    use_norm_score: bool = True,
    use_detector_score: bool = True,
    use_flip: bool = True,
    one_to_n_protocol: str = "per-gallery",
) -> tuple[dict[str, Any], np.ndarray]:
    """1:1 TAR@FAR and AUC, plus 1:N when the set has 1:N lists.

    Args:
        ijb: the protocol files.
        features: ``[N, 2, D]`` (image, mirrored image) or ``[N, D]`` per image, in ``ijb.names`` order.
        use_norm_score, use_detector_score, use_flip: insightface's N / D / F switches.
        one_to_n_protocol: ``per-gallery`` (open-set search of each gallery, NIST definitions) or
            ``insightface`` (the galleries merged and scored as insightface's ``ijb_1n.py``, the
            protocol of most published 1:N numbers; :mod:`fr_lightning.eval.ijb.insightface_1n`).

    Returns:
        ``(results, scores)``: a JSON-ready dict and the ``[P]`` pair scores.
    """
    if features.ndim == 3:
        feats = features[:, 0] + features[:, 1] if use_flip else features[:, 0]
    elif use_flip:
        raise ValueError("flip test needs [N, 2, D] features (image and mirrored image)")
    else:
        feats = features
    if len(feats) != len(ijb.names):
        raise ValueError(f"{len(feats)} features for {len(ijb.names)} images")
    tf, tids = pool_templates(feats, ijb.faceness, ijb.templates, ijb.medias, use_norm_score, use_detector_score)
    scores = template_pair_scores(tf, tids, ijb.t1, ijb.t2)
    fpr, tpr, _ = insightface_roc(scores, ijb.labels)
    one_to_one: dict[str, float] = tar_table(fpr, tpr, IJB_FARS)
    one_to_one["auc"] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    rx, ry = roc_points(fpr, tpr)
    results: dict[str, Any] = {
        "target": ijb.target,
        "switches": {"norm_score": use_norm_score, "detector_score": use_detector_score, "flip": use_flip},
        "images": len(ijb.names),
        "templates": int(len(tids)),
        "pairs": int(len(scores)),
        "genuine_pairs": int(ijb.labels.sum()),
        "1:1": one_to_one,
        "roc": {"fpr": rx, "tpr": ry},
    }
    if one_to_n_protocol not in ("per-gallery", "insightface"):
        raise ValueError(f"one_to_n_protocol must be 'per-gallery' or 'insightface', got {one_to_n_protocol!r}")
    if ijb.probes is not None:
        probe = ijb.probes
        pos = np.searchsorted(tids, probe.templates)
        one_to_n = {}
        if one_to_n_protocol == "insightface":
            templates = np.concatenate([g.templates for g in ijb.galleries.values()])
            subjects = np.concatenate([g.subjects for g in ijb.galleries.values()])
            gpos = np.searchsorted(tids, templates)
            merged = "+".join(ijb.galleries) + " (ijb_1n.py)"
            one_to_n[merged] = search_insightface_1n(tf[pos], probe.subjects, tf[gpos], subjects)
        else:
            for name, gallery in ijb.galleries.items():
                gpos = np.searchsorted(tids, gallery.templates)
                one_to_n[name] = identify_open_set(tf[pos], probe.subjects, tf[gpos], gallery.subjects)
        results["1:N"] = one_to_n
        results["1:N protocol"] = one_to_n_protocol
    return results, scores


def _pct(v: float) -> str:
    return "   n/a" if v != v else f"{100 * v:6.2f}"


def format_table(results: dict[str, Any]) -> str:
    """The result as text tables (percentages), like insightface's TPR@FPR table."""
    sw = results["switches"]
    mode = "N{:d}D{:d}F{:d}".format(sw["norm_score"], sw["detector_score"], sw["flip"])
    head = f"{results['target'].upper()} 1:1 ({mode}): {results['templates']} templates, {results['pairs']} pairs ({results['genuine_pairs']} genuine)"
    keys = [k for k in results["1:1"] if k.startswith("tar@")]
    lines = [head, "  TAR (%) at FAR " + " ".join(f"{k.split('=')[1]:>6}" for k in keys) + "     AUC", "                 " + " ".join(_pct(results["1:1"][k]) for k in keys) + f"  {_pct(results['1:1']['auc'])}"]
    for name, r in results.get("1:N", {}).items():
        metric_keys = [k for k in r if k.startswith(("rank-", "tpir@"))]
        protocol = "insightface ijb_1n.py, closed set" if results.get("1:N protocol") == "insightface" else "per gallery, open set"
        lines.append(f"{results['target'].upper()} 1:N [{protocol}] gallery {name} ({int(r['mated'])} mated / {int(r['non_mated'])} non-mated probes): " + "  ".join(f"{k} {_pct(r[k]).strip()}" for k in metric_keys))
    return "\n".join(lines)


def log_wandb(results: dict[str, Any], name: str, out_dir: Path, config: dict[str, Any], group: str | None = None) -> str | None:
    """Log the metrics and the ROC (TAR vs log10 FAR line plot) to a W&B ``eval`` run; returns the run dir."""
    import wandb

    tags = [f"eval:{results['target']}"]
    run = wandb.init(project="fr-lightning", job_type="eval", name=name, group=group, tags=tags, dir=str(out_dir), config=config, reinit=True)
    try:
        target = results["target"]
        metrics: dict[str, Any] = {f"{target}/{k}": v for k, v in results["1:1"].items()}
        for g, r in results.get("1:N", {}).items():
            metrics.update({f"{target}/{g}/{k}": v for k, v in r.items()})
        if "roc" in results and results["roc"]["fpr"]:
            table = wandb.Table(columns=["log10_far", "tar"], data=[[float(np.log10(f)), t] for f, t in zip(results["roc"]["fpr"], results["roc"]["tpr"])])
            metrics[f"{target}/roc"] = wandb.plot.line(table, "log10_far", "tar", title=f"{target.upper()} ROC ({name})")
        run.log(metrics)
        for k, v in metrics.items():
            if isinstance(v, float):
                run.summary[k] = v
        return str(Path(run.dir).parent)
    finally:
        run.finish()


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` (NaN as null) to ``path``."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and v != v else v

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(results), indent=2))
