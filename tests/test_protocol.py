"""The v2 evidence protocol: verdicts from the declared rule, seeds that draw the data, generated docs."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from experiments.claims import CLAIMS
from experiments.protocol import Claim, Endpoint, Guard, paired_gain, verdict
from experiments.seeds import CALIBRATION_SEEDS, REPORTED_SEEDS, data_seed_args, drawn_val_sets

ROOT = Path(__file__).resolve().parents[1]
CLAIM = Claim(
    name="toy", statement="toy", method="m", baseline="b",
    endpoints=(Endpoint("acc", min_gain=1.0),), guards=(Guard("full", max_drop=1.0),), seeds=(1, 2, 3, 4, 5),
)


def _runs(acc: list[float], full: list[float]) -> list[dict[str, float]]:
    return [{"acc": a / 100, "full": f / 100} for a, f in zip(acc, full)]


def test_paired_gain_matches_a_hand_computed_t_test() -> None:
    gains = [2.0, 3.0, 1.0, 4.0, 2.5]
    g = paired_gain(_runs(gains, [0] * 5), _runs([0] * 5, [0] * 5), "acc", [1, 2, 3, 4, 5])
    mean, sd, n = np.mean(gains), np.std(gains, ddof=1), 5
    t = mean / (sd / math.sqrt(n))
    assert g.mean == pytest.approx(mean) and g.std == pytest.approx(sd)
    # t distribution with 4 degrees of freedom: closed-form survival function
    x = 4 / (4 + t * t)
    from scipy.special import betainc

    assert g.p_greater == pytest.approx(0.5 * betainc(2.0, 0.5, x), rel=1e-9)
    low, high = g.interval()
    assert (low + high) / 2 == pytest.approx(mean) and (high - low) / 2 == pytest.approx(2.7764451052 * sd / math.sqrt(n), rel=1e-8)
    assert g.worst == 1.0 and g.seeds == (1, 2, 3, 4, 5)


def test_verdict_shown_only_when_every_condition_holds() -> None:
    seeds = [1, 2, 3, 4, 5]
    base = _runs([70] * 5, [80] * 5)
    shown = verdict(CLAIM, {"m": _runs([72, 73, 71.5, 72.5, 73], [80] * 5), "b": base}, seeds)
    assert shown.outcome == "shown" and shown.reasons == ()
    small = verdict(CLAIM, {"m": _runs([70.5, 70.6, 70.4, 70.7, 70.5], [80] * 5), "b": base}, seeds)
    assert small.outcome == "not shown" and any("mean gain" in r for r in small.reasons)
    noisy = verdict(CLAIM, {"m": _runs([80, 60, 75, 65, 72], [80] * 5), "b": base}, seeds)
    assert noisy.outcome == "not shown" and any("p =" in r for r in noisy.reasons)
    guard = verdict(CLAIM, {"m": _runs([72, 73, 71.5, 72.5, 73], [78] * 5), "b": base}, seeds)
    assert guard.outcome == "not shown" and any("full" in r for r in guard.reasons)
    partial = verdict(CLAIM, {"m": _runs([72] * 3, [80] * 3), "b": base[:3]}, seeds[:3])
    assert partial.outcome == "incomplete"


def test_non_inferiority_endpoint_tests_against_its_margin() -> None:
    claim = Claim(
        name="toy-ni", statement="toy", method="m", baseline="b",
        endpoints=(Endpoint("acc", min_gain=-1.0, null=-1.0),), seeds=(1, 2, 3, 4, 5),
    )  # fmt: skip
    seeds = [1, 2, 3, 4, 5]
    base = _runs([70] * 5, [80] * 5)
    slightly_behind = _runs([69.6, 69.8, 69.7, 69.9, 69.5], [80] * 5)  # -0.3 on average, tight
    held = verdict(claim, {"m": slightly_behind, "b": base}, seeds)
    assert held.outcome == "shown"
    g = held.gains["acc"]
    assert g.p_above(-1.0) < 0.05 < g.p_greater  # behind the baseline, yet not by a point
    shifted = [x + 1.0 for x in g.gains]
    from scipy import stats

    assert g.p_above(-1.0) == pytest.approx(stats.ttest_1samp(shifted, 0.0, alternative="greater").pvalue, rel=1e-12)
    far_behind = verdict(claim, {"m": _runs([68.5, 68.8, 68.7, 68.9, 68.6], [80] * 5), "b": base}, seeds)
    assert far_behind.outcome == "not shown" and any("p =" in r for r in far_behind.reasons)
    assert "against -1 points" in claim.rule()


def test_every_claim_is_well_formed() -> None:
    for name, claim in CLAIMS.items():
        assert claim.name == name and claim.method != claim.baseline and claim.endpoints
        assert len(claim.seeds) >= 3 and not set(claim.seeds) & set(CALIBRATION_SEEDS)
        assert claim.command.startswith("python -m experiments.")
    assert len(REPORTED_SEEDS) >= 5 and not set(REPORTED_SEEDS) & set(CALIBRATION_SEEDS)


def test_a_study_seed_draws_faces_noise_and_pairs() -> None:
    data = {
        "init_args": {
            "train": {"class_path": "fr_lightning.data.SyntheticSource", "init_args": {"seed": 0}},
            "label_noise": {"kind": "symmetric", "rate": 0.4, "seed": 0},
            "val_sets": [
                {"class_path": "fr_lightning.data.SyntheticPairs", "init_args": {"name": "a", "set_seed": 2}},
                {"class_path": "fr_lightning.data.BinPairs", "init_args": {"path": "lfw.bin"}},
            ],
        }
    }
    args = data_seed_args(data, 3)
    assert "--data.init_args.train.init_args.seed=3" in args
    assert any(a.startswith("--data.init_args.label_noise=") and "seed: 3" in a for a in args)
    sets = drawn_val_sets(data["init_args"]["val_sets"], 3)
    assert sets[0]["init_args"] == {"name": "a", "set_seed": 3002, "seed": 3}
    assert sets[1] == data["init_args"]["val_sets"][1]
    assert data["init_args"]["val_sets"][0]["init_args"] == {"name": "a", "set_seed": 2}  # input untouched


def test_drawn_evaluation_pairs_use_other_identities() -> None:
    from fr_lightning.data import SyntheticPairs

    a = SyntheticPairs("synth-lfw", "standard", pairs=20, set_seed=0, seed=0).build(32)
    b = SyntheticPairs(**drawn_val_sets([{"class_path": "x.SyntheticPairs", "init_args": {
        "name": "synth-lfw", "kind": "standard", "pairs": 20, "set_seed": 0}}], 1)[0]["init_args"]).build(32)
    idx = np.arange(a.num_images)
    assert not np.array_equal(a.load(idx), b.load(idx))


def test_generated_documents_match_the_run_files() -> None:
    from experiments.report import stale

    assert stale() == [], "run `python -m experiments.report` and commit the result"


def test_every_claim_has_its_section_in_the_results() -> None:
    from experiments.report import unplaced

    assert unplaced() == []


def test_every_run_was_made_after_its_claim_was_declared() -> None:
    from experiments.report import CLAIMS as claims, _full_commits, load
    from experiments.study import declared_at

    commits = {c for claim in claims.values() if (s := load(claim)) is not None for c in _full_commits(s)}
    assert commits, "the committed studies must have run files"
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if shallow.returncode != 0 or shallow.stdout.strip() == "true":
        pytest.skip("no git history here (not a repository, or a shallow clone)")
    have = [c for c in commits if subprocess.run(["git", "cat-file", "-e", f"{c}^{{commit}}"], cwd=ROOT, capture_output=True).returncode == 0]
    assert set(have) == commits, f"run commits missing from a full history: {sorted(commits - set(have))}"
    for name, claim in claims.items():
        study = load(claim)
        for commit in [] if study is None else _full_commits(study):
            if commit in have:
                assert declared_at(commit, name) == claim, f"{name}: a run at {commit[:7]} predates its claim as declared now"


def test_a_block_the_generator_cannot_match_is_an_error() -> None:
    from experiments.report import render

    good = "a\n<!-- generated:x -->\nold\n<!-- /generated:x -->\n"
    assert render(good, {"x": "new"}, "doc") == "a\n<!-- generated:x -->\nnew\n<!-- /generated:x -->\n"
    with pytest.raises(KeyError, match="y.1"):  # a dot in the name: never matched, so never regenerated
        render("<!-- generated:y.1 -->\n<!-- /generated:y.1 -->\n", {"y.1": "new"}, "doc")
    with pytest.raises(KeyError, match="without a matching end marker"):
        render("<!-- generated:x -->\nold\n", {"x": "new"}, "doc")


def test_every_recipe_has_a_row_in_the_verdict_table() -> None:
    from experiments.report import NO_CLAIM, RECIPE_CLAIMS

    shipped = {f"recipes/{p.name}" for p in (ROOT / "recipes").glob("*.yaml")}
    assert set(RECIPE_CLAIMS) == shipped, "list a new recipe in experiments/report.py RECIPE_CLAIMS"
    for recipe, names in RECIPE_CLAIMS.items():
        assert all(n in CLAIMS for n in names), recipe
        assert names or recipe in NO_CLAIM, f"{recipe}: no claim and no word on why"
