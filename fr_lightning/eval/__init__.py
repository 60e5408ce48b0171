"""Evaluation: the verification protocol, ROC / TAR@FAR, and report charts."""

from fr_lightning.eval.plots import bar_plot, line_plot, roc_plot
from fr_lightning.eval.verification import (
    ACC_THRESHOLDS,
    VAL_THRESHOLDS,
    evaluate_pairs,
    flip_sum_embeddings,
    fold_slices,
    l2_normalize,
    pair_scores,
    roc_auc,
    roc_curve,
    tar_at_far,
    tar_key,
    threshold_at_far,
)

__all__ = [
    "ACC_THRESHOLDS",
    "VAL_THRESHOLDS",
    "bar_plot",
    "evaluate_pairs",
    "flip_sum_embeddings",
    "fold_slices",
    "l2_normalize",
    "line_plot",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "roc_plot",
    "tar_at_far",
    "tar_key",
    "threshold_at_far",
]
