"""Regenerate every generated table and verdict from the v2 run files.

    python -m experiments.report            # rewrite the generated blocks in place
    python -m experiments.report --check    # exit 1 if a document differs from what the files give

Targets:

- ``docs/results.md``: the blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``:
  ``summary`` (one row per declared claim) and one block per claim (claim, rule, per-variant
  table, paired gains with 95 % confidence interval and p, worst seed, verdict, compute);
- ``docs/results/misses.md``: one block per missed claim's hypothesis test (:mod:`experiments.misses`);
- ``README.md``: the ``evidence`` block (the verdict per recipe-level study);
- recipe headers: a comment line ``# Verdict (<claim>): ...``.

A verdict is computed by :func:`experiments.protocol.verdict` from the run files listed in
``experiments/out/v2/<claim>/study.json``; nothing here is typed by hand. ``--check`` also
verifies, where the git history is present, that every run's commit already declared its claim
exactly as ``experiments/claims.py`` does now.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.claims import CLAIMS
from experiments.misses.report import blocks as miss_blocks
from experiments.protocol import Claim, Endpoint, Verdict, paired_gain, verdict

ROOT = Path(__file__).resolve().parents[1]
OUT_V2 = ROOT / "experiments" / "out" / "v2"
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n).*?(<!-- /generated:(?P=name) -->)", re.S)
VERDICT_LINE = re.compile(r"^# Verdict \((?P<name>[\w-]+)\): .*$", re.M)

#: claim -> label -> metric key shown in its tables (besides the rule's endpoints and guards)
DISPLAY: dict[str, dict[str, str]] = {
    "lowres-recipe": {
        "8 px": "val/synth-lowres@8/acc",
        "16 px": "val/synth-lowres@16/acc",
        "32 px": "val/synth-lowres@32/acc",
        "full": "val/synth-lowres@full/acc",
        "rank-1 @16 px": "val/synth-lowres@16/rank1",
        "synth-lfw": "val/synth-lfw/acc",
    },
    "finetune": {"synth-lfw": "val/synth-lfw/acc", "synth-lfw TAR@FAR=1e-2": "val/synth-lfw/tar@far=1e-2"},
    "poseface-preset": {"frontal-frontal": "val/synth-ff/acc", "frontal-profile": "val/synth-cfpfp/acc"},
    "gabn-preset": {
        **{f"g{g}": f"val/synth-rfw-g{g}/acc" for g in range(4)},
        "worst group": "val/fairness/min",
        "mean": "val/fairness/mean",
        "STD": "val/fairness/std",
    },
    "adasin-heads": {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"},
    "f2c-partial-fc": {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"},
    "search-softmax": {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"},
    "pair": {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"},
    "lowres-preset": {f"{r} px": f"val/synth-lowres@{r}/acc" for r in (8, 16, 32)} | {"full": "val/synth-lowres@full/acc"},
}


@dataclass(frozen=True)
class Study:
    """A claim's runs as ``study.json`` lists them."""

    claim: Claim
    seeds: list[int]
    runs: dict[str, list[dict[str, Any]]]
    command: str
    wall_s: float = 0.0

    def verdict(self) -> Verdict:
        return verdict(self.claim, self.runs, self.seeds)


def load(claim: Claim, out_dir: Path = OUT_V2) -> Study | None:
    """The study of ``claim`` from ``out_dir/<folder>/study.json`` and its run files; None before its first run."""
    folder = out_dir / claim.folder()
    index = folder / "study.json"
    if not index.is_file():
        return None
    summary = json.loads(index.read_text())
    runs = {v: [json.loads((folder / f).read_text()) for f in files] for v, files in summary["runs"].items()}
    seeds = summary["seeds"][: min(len(r) for r in runs.values())]  # an interrupted study: the seeds every variant finished
    return Study(claim, seeds, {v: r[: len(seeds)] for v, r in runs.items()}, summary["command"], float(summary.get("wall_s", 0.0)))


def _pct(values: Sequence[float]) -> str:
    arr = 100.0 * np.asarray(values, dtype=float)
    if len(arr) < 2:
        return f"{arr.mean():.2f}" if len(arr) else "n/a"
    return f"{arr.mean():.2f} ± {arr.std(ddof=1):.2f}"


def _p(value: float, eq: bool = False) -> str:
    """A p-value to three decimals; ``< 0.001`` below that."""
    if value < 0.001:
        return "< 0.001"
    return f"{'= ' if eq else ''}{value:.3f}"


def _columns(claim: Claim) -> dict[str, str]:
    cols = dict(DISPLAY.get(claim.name) or DISPLAY.get(claim.folder(), {}))
    for part in (*claim.endpoints, *claim.guards):
        if part.metric not in cols.values():
            cols[part.name()] = part.metric
    return cols


def _commits(study: Study) -> list[str]:
    return sorted({r.get("git_head", "unknown")[:7] for runs in study.runs.values() for r in runs})


def _shown(claim: Claim, study: Study) -> dict[str, list[dict[str, Any]]]:
    """The variants a claim's tables show: all of its study's, or its two when several claims share the study."""
    if not claim.study:
        return study.runs
    return {v: study.runs[v] for v in (claim.method, claim.baseline) if v in study.runs}


def section(claim: Claim, study: Study | None) -> str:
    """The generated block of one claim."""
    lines = [f"**Claim.** {claim.statement}", "", f"**Rule.** {claim.rule()}.", "", f"**Command.** `{claim.command}`", ""]
    if study is None or not study.seeds:
        return "\n".join([*lines, "**Verdict: not run yet.**"])
    result = study.verdict()
    cols = _columns(claim)
    lines += [
        f"Seeds {study.seeds} (each draws the training faces, any label noise and the evaluation pairs); "
        f"runs made at commit {', '.join(_commits(study))}. Accuracy in %, mean ± sample std over seeds:",
        "",
        "| variant | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for variant, runs in _shown(claim, study).items():
        cells = [_pct([r[k] for r in runs if k in r]) for k in cols.values()]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired gain of `{claim.method}` over `{claim.baseline}` (points):",
        "",
        "| metric | role | mean | 95 % CI | one-sided p | worst seed | per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    roles = {e.metric: f"endpoint (≥ {e.min_gain:g}" + (f"; p tests a gain > {e.null:+g})" if e.null else ")") for e in claim.endpoints} | {g.metric: f"guard (≥ −{g.max_drop:g})" for g in claim.guards}
    nulls = {e.metric: e.null for e in claim.endpoints}
    for label, key in cols.items():
        g = paired_gain(study.runs[claim.method], study.runs[claim.baseline], key, study.seeds)
        if not g.n:
            continue
        low, high = g.interval()
        per_seed = ", ".join(f"{s}: {v:+.2f}" for s, v in zip(g.seeds, g.gains))
        lines.append(
            f"| {label} | {roles.get(key, 'shown only')} | {g.mean:+.2f} | [{low:+.2f}, {high:+.2f}] | {_p(g.p_above(nulls.get(key, 0.0)))} | {g.worst:+.2f} | {per_seed} |"
        )
    walls = {v: sum(r.get("wall_s", 0.0) for r in runs) for v, runs in _shown(claim, study).items()}
    base_wall = walls.get(claim.baseline) or float("nan")
    compute = ", ".join(f"{v} {w / len(study.seeds):.0f} s ({w / base_wall:.2f}×)" for v, w in walls.items())
    reasons = "" if not result.reasons else " — " + "; ".join(result.reasons)
    lines += ["", f"Mean wall time per run: {compute}.", "", f"**Verdict: {result.outcome}**{reasons}."]
    return "\n".join(lines)


def _against(endpoint: Endpoint) -> str:
    """What a non-inferiority endpoint's p tests, after the p ("" for a superiority endpoint)."""
    return f" (against {endpoint.null:+g})" if endpoint.null else ""


def verdict_phrase(claim: Claim, study: Study | None) -> str:
    """One line: the verdict and the first endpoint's gain with its confidence interval."""
    if study is None or not study.seeds:
        return f"not run yet (`{claim.command}`)"
    result = study.verdict()
    first = claim.endpoints[0]
    g = result.gains[first.metric]
    low, high = g.interval()
    return (
        f"{result.outcome}: {first.name()} of `{claim.method}` over `{claim.baseline}` {g.mean:+.2f} points "
        f"[95 % CI {low:+.2f}, {high:+.2f}], p {_p(g.p_above(first.null), eq=True)}{_against(first)}, "
        f"{g.n} seeds that draw the data (`{claim.command}`)"
    )


#: recipe -> the claims whose studies measured it (what it ships first); a recipe with none says so
RECIPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "recipes/arcface.yaml": (),
    "recipes/adasin.yaml": ("adasin-heads",),
    "recipes/poseface.yaml": ("poseface-preset",),
    "recipes/gabn.yaml": ("gabn-preset",),
    "recipes/coteaching.yaml": ("coteaching-selection", "coteaching", "coteaching-compute"),
    "recipes/kd.yaml": ("kd-preset",),
    "recipes/lowres.yaml": ("lowres-recipe", "lowres-preset", "lowres-paper-preset"),
    "recipes/lowres-kd.yaml": (),
    "recipes/noisy-lowres.yaml": (),
    "recipes/triplet.yaml": ("pair-arcface-over-triplet",),
    "recipes/ctl.yaml": ("pair-arcface-over-ctl",),
    "recipes/finetune.yaml": ("finetune",),
}
#: what a recipe without a claim of its own is, in the recipe table
NO_CLAIM = {
    "recipes/arcface.yaml": "the baseline every study compares with",
    "recipes/lowres-kd.yaml": "no v2 study (v1, exploratory: docs/results/v1.md)",
    "recipes/noisy-lowres.yaml": "no v2 study (v1, exploratory: docs/results/v1.md)",
}


def recipe_table(studies: Mapping[str, Study | None]) -> str:
    """Per recipe: each of its claims' computed verdict (linked) and the commands that produced them."""
    rows = ["| recipe | v2 verdicts (computed by each claim's rule) | command |", "|---|---|---|"]
    for recipe, names in RECIPE_CLAIMS.items():
        if not names:
            rows.append(f"| `{recipe}` | {NO_CLAIM[recipe]} | |")
            continue
        cells = []
        for name in names:
            study = studies.get(name)
            outcome = study.verdict().outcome if study is not None and study.seeds else "not run yet"
            claim = CLAIMS[name]
            cells.append(f"[{name}](docs/results.md#{name}): **{outcome}** (`{claim.method}` over `{claim.baseline}`)")
        commands = dict.fromkeys(f"`{CLAIMS[n].command}`" for n in names)
        rows.append(f"| `{recipe}` | " + "; ".join(cells) + " | " + ", ".join(commands) + " |")
    return "\n".join(rows)


def summary(studies: Mapping[str, Study | None]) -> str:
    rows = ["| study | verdict and main endpoint |", "|---|---|"]
    for name, claim in CLAIMS.items():
        rows.append(f"| [{name}](#{name}) | {verdict_phrase(claim, studies.get(name))} |")
    return "\n".join(rows)


#: generated block -> (calibration run folder under experiments/out/v2, metric it shows)
CALIBRATIONS: dict[str, tuple[str, str]] = {
    "calibration-noise": ("coteaching-calibration", "val/synth-lfw/acc"),
    "calibration-lowres": ("lowres-preset-calibration", "val/synth-lfw/acc"),
    # the first lowres calibration (the recipe's learning rate 0.1, warm-up 5 %), kept as the reason for the change
    "calibration-lowres-first": ("lowres-preset-calibration-lr0.1", "val/synth-lfw/acc"),
}
#: generated block -> (folder of a study's auxiliary runs, e.g. the KD teachers, metric it shows)
AUXILIARY: dict[str, tuple[str, str]] = {"kd-teachers": ("kd-preset-teachers", "val/synth-lfw/acc")}


def calibration_section(folder: Path, metric: str, seeds_note: str = "never reported") -> str:
    """A calibration's per-seed results (baseline only, calibration seeds) from its run files: the
    validation curve where the runs kept one, the final accuracy, its mean, std and spread (max − min)."""
    index = folder / "study.json"
    if not index.is_file():
        return "Not run yet."
    summary = json.loads(index.read_text())
    lines = [f"`{summary['command']}` (seeds {summary['seeds']}, {seeds_note}). {metric} in %:", ""]
    finals, peaks = [], []
    for variant, files in summary["runs"].items():
        runs = [json.loads((folder / f).read_text()) for f in files]
        header = [f"epoch {int(p['epoch']) + 1}" for p in runs[0].get("curve", [])]
        train = all("train/acc" in r for r in runs)
        extra = (["peak", "drop from peak"] if header else []) + (["training accuracy (last step)"] if train else [])
        lines += ["| variant | seed | " + " | ".join([*header, "final", *extra]) + " |", "|---|---|" + "---|" * (len(header) + 1 + len(extra))]
        for seed, run in zip(summary["seeds"], runs):
            curve = [100 * p[metric] for p in run.get("curve", [])]
            final = 100 * run[metric]
            finals.append(final)
            cells = [f"{v:.1f}" for v in curve] + [f"{final:.2f}"]
            if curve:
                peaks.append(max(curve))
                cells += [f"{max(curve):.1f}", f"{max(curve) - curve[-1]:.1f}"]
            if train:
                cells.append(f"{100 * run['train/acc']:.1f}")
            lines.append(f"| {variant} | {seed} | " + " | ".join(cells) + " |")
    std = np.std(finals, ddof=1) if len(finals) > 1 else 0.0
    lines += ["", f"Final accuracy {np.mean(finals):.2f} ± {std:.2f}, spread (max − min) {max(finals) - min(finals):.2f} points."]
    if peaks:
        lines[-1] += f" Mean peak {np.mean(peaks):.2f}; {sum(p - f > 0.5 for p, f in zip(peaks, finals))} of {len(finals)} seeds end more than 0.5 points below their peak."
    return "\n".join(lines)


def study_table(folder_name: str, out_dir: Path = OUT_V2) -> str:
    """Every variant of a study that several claims share, side by side (mean ± sample std over its seeds)."""
    claims = [c for c in CLAIMS.values() if c.folder() == folder_name]
    study = load(claims[0], out_dir) if claims else None
    if study is None or not study.seeds:
        return "Not run yet."
    cols = DISPLAY.get(folder_name) or _columns(claims[0])
    lines = [f"All variants, seeds {study.seeds}, accuracy in % (mean ± sample std over seeds), mean wall time per run:", "",
             "| variant | " + " | ".join(cols) + " | wall time |", "|---|" + "---|" * (len(cols) + 1)]
    for variant, runs in study.runs.items():
        cells = [_pct([r[k] for r in runs if k in r]) for k in cols.values()]
        wall = sum(r.get("wall_s", 0.0) for r in runs) / len(runs)
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {wall:.0f} s |")
    lines += ["", f"Study wall time {study.wall_s:.0f} s (`{study.command}`, runs two at a time)."]
    return "\n".join(lines)


#: the wall-time limit a study command should meet on the 2-core machine (issue: 30 minutes)
WALL_LIMIT_S = 1800.0


def wall_times(out_dir: Path = OUT_V2) -> str:
    """Each study command's wall time as its ``study.json`` recorded it (the KD teachers' runs added to
    their study's), and whether it is within :data:`WALL_LIMIT_S`."""
    folders = list(dict.fromkeys(c.folder() for c in CLAIMS.values()))
    folders += [folder for name, (folder, _) in CALIBRATIONS.items() if not name.endswith("-first")]  # not a superseded try
    folders += [folder for folder, _ in AUXILIARY.values()]
    totals: dict[str, float] = {}
    for folder in folders:
        index = out_dir / folder / "study.json"
        if index.is_file():
            summary = json.loads(index.read_text())
            wall = summary.get("command_wall_s", summary.get("wall_s", 0.0))  # the whole command where recorded
            totals[summary["command"]] = totals.get(summary["command"], 0.0) + float(wall)
    rows = ["| command | wall time | within 30 min |", "|---|---|---|"]
    for command, wall in totals.items():
        rows.append(f"| `{command}` | {wall:,.0f} s ({wall / 60:.1f} min) | {'yes' if wall <= WALL_LIMIT_S else '**no**'} |")
    return "\n".join(rows)


def misses_summary(folder: Path) -> str:
    """One row per missed claim's hypothesis test: the hypothesis and the outcome its rule gave."""
    from experiments.misses import EXPERIMENTS
    from experiments.misses.common import read_run

    rows = ["| miss | hypothesis tested | outcome (computed) |", "|---|---|---|"]
    for name in EXPERIMENTS:
        if (folder / f"{name}.json").is_file():
            run = read_run(name, folder)
            hypothesis = run["hypothesis"].replace("|", "\\|")
            rows.append(f"| [{run['title']}](results/misses.md) | {hypothesis} | **{run['outcome']}** |")
    return "\n".join(rows)


def blocks(out_dir: Path = OUT_V2) -> dict[str, str]:
    """Generated block name -> its content (without the markers)."""
    studies = {name: load(claim, out_dir) for name, claim in CLAIMS.items()}
    out = {"summary": summary(studies), "evidence": summary(studies).replace("](#", "](docs/results.md#"), "recipe-verdicts": recipe_table(studies)}
    out.update({name: calibration_section(out_dir / folder, metric) for name, (folder, metric) in CALIBRATIONS.items()})
    out.update({name: calibration_section(out_dir / folder, metric, "the study's seeds") for name, (folder, metric) in AUXILIARY.items()})
    from experiments.misses import EXPERIMENTS as MISSES

    out.update({f"miss-{name}": f"Not run yet (`python -m experiments.misses --only {name}`)." for name in MISSES})
    out.update({name: text.rstrip("\n") for name, text in miss_blocks(out_dir / "misses").items()})
    out["misses-summary"] = misses_summary(out_dir / "misses")
    out["wall-times"] = wall_times(out_dir)
    out.update({f"study-{folder}": study_table(folder, out_dir) for folder in sorted({c.study for c in CLAIMS.values() if c.study})})
    out.update({name: section(claim, studies[name]) for name, claim in CLAIMS.items()})
    out.update({f"verdict:{name}": verdict_phrase(claim, studies[name]) for name, claim in CLAIMS.items()})
    return out


def render(text: str, generated: Mapping[str, str], where: str) -> str:
    """``text`` with every generated block and verdict line replaced; an unknown name is an error."""

    def block(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in generated:
            raise KeyError(f"{where}: no generator for block {name!r}")
        return f"{match.group(1)}{generated[name]}\n{match.group(3)}"

    def line(match: re.Match[str]) -> str:
        name = match.group("name")
        if f"verdict:{name}" not in generated:
            raise KeyError(f"{where}: no claim {name!r} for its verdict line")
        return f"# Verdict ({name}): {generated[f'verdict:{name}']}"

    opened = re.findall(r"<!-- generated:([^ ]+) -->", text)
    matched = [m.group("name") for m in BLOCK.finditer(text)]
    if len(opened) != len(matched):
        unmatched = sorted(set(opened) - set(matched)) or opened
        raise KeyError(f"{where}: generated block(s) {unmatched} without a matching end marker or with a name other than letters, digits, '_' and '-'")
    return VERDICT_LINE.sub(line, BLOCK.sub(block, text))


def targets(root: Path = ROOT) -> list[Path]:
    """The files with generated parts: docs/results.md, README.md and every recipe with a verdict line."""
    files = [root / "docs" / "results.md", root / "docs" / "results" / "misses.md", root / "README.md"]
    yamls = sorted((root / "recipes").glob("*.yaml")) + sorted((root / "configs").glob("*/*.yaml"))
    return files + [p for p in yamls if VERDICT_LINE.search(p.read_text())]


def stale(root: Path = ROOT, out_dir: Path = OUT_V2) -> list[str]:
    """The target files whose generated parts differ from what the run files give."""
    generated = blocks(out_dir)
    return [str(p.relative_to(root)) for p in targets(root) if render(p.read_text(), generated, str(p)) != p.read_text()]


def unplaced(root: Path = ROOT) -> list[str]:
    """Claims whose block ``<!-- generated:NAME -->`` is missing from ``docs/results.md``."""
    names = {m.group("name") for m in BLOCK.finditer((root / "docs" / "results.md").read_text())}
    return [f"docs/results.md has no block for claim {name!r} (add <!-- generated:{name} --> ... <!-- /generated:{name} -->)" for name in CLAIMS if name not in names]


def undeclared(out_dir: Path = OUT_V2) -> list[str]:
    """Runs whose commit did not declare their claim as it stands (reads the git history)."""
    from experiments.study import declared_at

    problems = []
    for name, claim in CLAIMS.items():
        study = load(claim, out_dir)
        for commit in [] if study is None else _full_commits(study):
            if declared_at(commit, name) != claim:
                problems.append(f"{name}: run at {commit[:7]} without the claim as declared now")
    return problems


def _full_commits(study: Study) -> list[str]:
    return sorted({r.get("git_head", "unknown") for runs in study.runs.values() for r in runs})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    if args.check:
        problems = [f"{f} differs from the run files (python -m experiments.report)" for f in stale()] + unplaced() + undeclared()
        print("\n".join(problems) or "generated parts match the run files; every run's claim was declared first")
        return 1 if problems else 0
    generated = blocks()
    for path in targets():
        text = path.read_text()
        new = render(text, generated, str(path))
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
