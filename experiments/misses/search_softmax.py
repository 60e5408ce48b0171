"""Search-Softmax behind ArcFace: does the search move the head at all at the study's budget?

The v2 Search-Softmax study (``python -m experiments.search_study``: default faces, 240 identities
× 16, 40 px, 5 epochs, LossSearch with 4 candidates per policy update, a warm-up of 1 epoch and
candidates of a quarter epoch) found the searched head behind ArcFace and level with CosFace.
This experiment trains the same head with its modulation fixed at a = 0 (no LossSearch, so the
target probability is left as it is: a normalised softmax at s = 32 without margin), everything
else the study's, on its seeds 1-5 (same faces and pairs), and sets it against the study's
searched runs of those seeds (fr_lightning's Python code is unchanged between the two commits;
the code versions in the run files differ because they also hash recipes and fragments, of which
only comment lines changed in between).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


from experiments.misses.common import Experiment, study_runs, train

HYPOTHESIS = (
    "Search-Softmax misses because at the study's budget the search barely moves its policy from the "
    "initial mean (a = -|mu| with mu = 0), so the trained head is, in effect, the fixed head at a = 0, a "
    "margin-free normalised softmax: the same head with a fixed at 0 and no search verifies synth-lfw "
    "pairs as accurately as the searched one."
)
RULE = (
    "Difference = searched - fixed (a = 0, no LossSearch) synth-lfw accuracy, paired by seed over the "
    "Search-Softmax study's seeds 1-5 (the searched runs are the study's). Supported iff |mean difference| "
    "<= 1 point and the 95 % confidence interval of the mean difference lies within [-2, +2] points; "
    "refuted otherwise."
)

SEEDS = [1, 2, 3, 4, 5]
MAX_MEAN: float = 1.0  # points
MAX_CI: float = 2.0  # points


def measure(quick: bool, out_dir: Path) -> dict[str, Any]:
    """Train the fixed head (and, quick, the searched one too); read the study's searched runs."""
    from experiments import search_study
    from experiments.preset_study import flow
    from experiments.protocol import PairedGain
    from experiments.seeds import CALIBRATION_SEEDS, data_seed_args

    seeds = [CALIBRATION_SEEDS[0]] if quick else SEEDS
    runs_args, data = search_study.variants(quick)
    budget, search = (search_study.QUICK, search_study.QUICK_SEARCH) if quick else (search_study.BUDGET, search_study.SEARCH)
    fixed = [*runs_args["search-softmax"], "--model.init_args.head.init_args.a=[0.0]", "--trainer.callbacks=[]"]
    variants = {"fixed-a0": fixed} | ({"search-softmax": runs_args["search-softmax"]} if quick else {})
    searching = variants.get("search-softmax")

    def seed_args(args: list[str], seed: int) -> list[str]:
        extra = [f"--trainer.callbacks={flow([search_study.loss_search(budget, search, seed)])}"] if args is searching else []
        return [*data_seed_args(data, seed), *extra]

    runs = train("search_softmax", variants, seeds, seed_args, quick, out_dir)
    searched = runs["search-softmax"] if quick else study_runs("search-softmax-arcface", ("search-softmax",), seeds)["search-softmax"]
    diff = PairedGain("val/synth-lfw/acc", tuple(100.0 * (s["val/synth-lfw/acc"] - f["val/synth-lfw/acc"]) for s, f in zip(searched, runs["fixed-a0"])), tuple(seeds))
    ci = list(diff.interval()) if len(seeds) > 1 else None  # one quick seed: no interval (JSON null, not NaN)
    return {
        "seeds": seeds, "reference": "trained here (quick)" if quick else "experiments/out/v2/search-softmax/ (the study's runs)",
        "searched": [100.0 * r["val/synth-lfw/acc"] for r in searched], "fixed": [100.0 * r["val/synth-lfw/acc"] for r in runs["fixed-a0"]],
        "final_mu": [float(r.get("search/mu/0", float("nan"))) for r in searched],
        "mean_diff": diff.mean, "ci": ci, "max_mean": MAX_MEAN, "max_ci": MAX_CI,
    }  # fmt: skip


def decide(measured: Mapping[str, Any]) -> str:
    """The rule (see RULE); a single quick seed has no interval, so only the mean is read there."""
    ci = measured["ci"]
    inside = ci is None or (ci[0] >= -measured["max_ci"] and ci[1] <= measured["max_ci"])
    return "supported" if abs(measured["mean_diff"]) <= measured["max_mean"] and inside else "refuted"


def table(measured: Mapping[str, Any]) -> list[str]:
    """Markdown rows: per seed, the searched and the fixed head's accuracy and the search's final policy mean."""
    rows = ["| seed | searched (the study's run) | fixed a = 0, no search | searched − fixed | final policy mean μ₀ |", "|---|---|---|---|---|"]
    for k, seed in enumerate(measured["seeds"]):
        s, f = measured["searched"][k], measured["fixed"][k]
        rows.append(f"| {seed} | {s:.2f} | {f:.2f} | {s - f:+.2f} | {measured['final_mu'][k]:+.3f} |")
    ci = measured["ci"]
    interval = f"95 % CI [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci is not None else "no interval (one seed)"
    rows += ["", f"synth-lfw accuracy in %. Mean difference {measured['mean_diff']:+.2f} points, {interval} "
             f"(searched runs: {measured['reference']}). The searched head's a is −|μ| around the policy mean μ (its start: 0)."]
    return rows


EXPERIMENT = Experiment("search_softmax", "Search-Softmax behind ArcFace", HYPOTHESIS, RULE, measure, decide, table)
