"""Runner of the v2 studies: declared claim first, seeds that draw the data, provenance in every run file.

``run_study`` fits every variant at every seed (seed-major) and writes

- ``experiments/out/v2/<claim>/runs/<name>-c<key>-s<seed>.json``: the run's final metrics,
  ``wall_s``, the commit (``git_head``) and :func:`experiments.common.code_version` of the code
  that produced it, the study seed, the data seeds, the ``fr fit`` arguments and the fully
  resolved config. The key hashes the code version and all arguments, so a changed code path or
  argument never reuses an old run;
- ``experiments/out/v2/<claim>/study.json``: which run file belongs to which variant and seed,
  the command, and the wall time.

Reported seeds run only when the claim is committed unchanged (:func:`require_committed`), so
``git log`` shows every rule before its first result. ``python -m experiments.report`` turns the
files into the tables and verdicts of ``docs/results.md``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from experiments.common import code_version, git_head, run_key
from experiments.preset_study import fit
from experiments.protocol import Claim

ROOT = Path(__file__).resolve().parents[1]
OUT_V2 = ROOT / "experiments" / "out" / "v2"
#: files whose committed content must equal the working copy before a reported run
DECLARATION_FILES = ("experiments/claims.py", "experiments/protocol.py")
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


class UndeclaredClaim(RuntimeError):
    """A reported run was asked for while its claim is not committed as it stands."""


def require_committed(claim: Claim, root: Path = ROOT) -> str:
    """The HEAD commit, after checking that ``claim`` is declared there exactly as in the working tree."""
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *DECLARATION_FILES], cwd=root).returncode
    if dirty:
        raise UndeclaredClaim(f"commit {', '.join(DECLARATION_FILES)} before running claim {claim.name!r} on its reported seeds")
    head = git_head(root)
    if declared_at(head, claim.name, root) != claim:
        raise UndeclaredClaim(f"claim {claim.name!r} is not declared at HEAD {head[:7]} as it stands")
    return head


def declared_at(commit: str, name: str, root: Path = ROOT) -> Claim | None:
    """Claim ``name`` as ``experiments/claims.py`` declared it at ``commit`` (None if absent or unreadable)."""
    proc = subprocess.run(["git", "show", f"{commit}:experiments/claims.py"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    namespace: dict[str, Any] = {"__name__": "claims_at_commit"}
    try:
        exec(compile(proc.stdout, f"{commit[:7]}:experiments/claims.py", "exec"), namespace)  # our own committed source
    except Exception:  # an old version that no longer imports against today's protocol
        return None
    return namespace.get("CLAIMS", {}).get(name)


def resolved_config(args: Sequence[str]) -> dict[str, Any]:
    """The fully resolved ``fr fit`` config of ``args`` (``fr fit --print_config``), as a dict."""
    code = "import sys; from fr_lightning.cli import cli_main; cli_main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, "fit", *args, "--print_config"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fr fit --print_config failed for {list(args)}:\n{proc.stderr[-3000:]}")
    return yaml.safe_load(proc.stdout)


def fit_recorded(claim: Claim, variant: str, args: Sequence[str], seed: int, folder: Path) -> tuple[dict[str, Any], Path]:
    """One run of ``claim``'s study (cached by code version and arguments) with its provenance; metrics and run file."""
    args = [*args, *QUIET]
    name = f"{claim.folder()}-{variant}"
    run_id = run_key(name, seed, args)
    path = folder / "runs" / f"{run_id}.json"
    record = None
    if not path.is_file():
        record = {
            "study": claim.folder(), "variant": variant, "seed": seed, "git_head": git_head(), "code_version": code_version(),
            "args": [a.replace(str(ROOT), ".") for a in args],
            "config": resolved_config([*args, f"--seed_everything={seed}"]),
        }
    return fit(name, args, seed, folder, run_id=run_id, record=record), path


def work_dir(claim: Claim, variant: str, args: Sequence[str], seed: int, folder: Path) -> Path:
    """The working directory of :func:`fit_recorded`'s run (where its checkpoints land)."""
    return folder / "work" / run_key(f"{claim.folder()}-{variant}", seed, [*args, *QUIET])


def run_study(
    claim: Claim,
    variants: Mapping[str, Sequence[str]],
    seeds: Sequence[int],
    seed_args: Any,
    command: str,
    out_dir: Path = OUT_V2,
    tag: str = "",
    also: Sequence[Claim] = (),
    jobs: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """Fit every variant at every seed; write the run files and ``study.json``; variant -> runs in seed order.

    Args:
        claim: the declared claim (its name is the output folder).
        variants: variant -> ``fr fit`` arguments without the seed arguments.
        seeds: study seeds; those of ``claim.seeds`` need the claim committed (:func:`require_committed`).
        seed_args: ``(variant args, seed) -> list[str]``: the overrides that make ``seed`` draw the data.
        command: the command line that reproduces the study (stored in ``study.json``).
        out_dir: parent folder of the study folders.
        tag: appended to the study folder name (quick and calibration runs stay apart from the reported ones).
        also: further claims that read the same runs (same ``study`` folder); each must be committed too.
        jobs: runs at a time, in processes of one thread each (2 uses both cores of the 2-core machine
            better than one run on two threads).
    """
    reported = [s for s in seeds if s in claim.seeds]
    if reported and not tag:
        for each in (claim, *also):
            require_committed(each)
    folder = out_dir / (claim.folder() + (f"-{tag}" if tag else ""))
    start = time.time()
    tasks = [(variant, [*base_args, *seed_args(base_args, seed)], seed) for seed in seeds for variant, base_args in variants.items()]
    files: dict[str, list[str]] = {v: [] for v in variants}
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for (variant, _args, seed), (metrics, path) in zip(tasks, _fit_tasks(claim, tasks, folder, jobs)):
        files[variant].append(path.relative_to(folder).as_posix())
        results[variant].append(metrics)
        print(f"  {variant} seed {seed}: {metrics.get('wall_s', 0):.0f} s", flush=True)
        summary = {"claim": claim.name, "claims": [c.name for c in (claim, *also)], "seeds": list(seeds), "runs": files, "command": command, "wall_s": time.time() - start}
        (folder / "study.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wall time {time.time() - start:.0f} s", flush=True)
    return results


def _fit_tasks(claim: Claim, tasks: Sequence[tuple[str, list[str], int]], folder: Path, jobs: int) -> Iterator[tuple[dict[str, Any], Path]]:
    """:func:`fit_recorded` of every ``(variant, args, seed)`` task, in order, ``jobs`` at a time."""
    if jobs <= 1:
        for variant, args, seed in tasks:
            yield fit_recorded(claim, variant, args, seed, folder)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from experiments.preset_study import _init_worker

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker) as pool:
        futures = [pool.submit(fit_recorded, claim, variant, args, seed, folder) for variant, args, seed in tasks]
        for future in futures:
            yield future.result()


def record_command_wall(folder: Path, seconds: float) -> None:
    """Add the whole command's wall time to ``folder/study.json`` (``command_wall_s``) and print it,
    for a command that runs more than :func:`run_study` (e.g. a pre-training run first)."""
    index = folder / "study.json"
    summary = json.loads(index.read_text())
    summary["command_wall_s"] = seconds
    index.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"command wall time {seconds:.0f} s (study runs {summary['wall_s']:.0f} s)", flush=True)
