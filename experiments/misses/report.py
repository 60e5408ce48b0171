"""Markdown of the ``miss-<name>`` blocks of docs/results/misses.md, from the run files only.

    python -m experiments.misses.report           # rewrite the blocks in docs/results/misses.md
    python -m experiments.misses.report --check   # exit 1 if the document differs from the run files
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from experiments.misses import EXPERIMENTS
from experiments.misses.common import OUT, read_run

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "results" / "misses.md"
#: Same form as experiments/report.py's BLOCK.
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n).*?(<!-- /generated:(?P=name) -->)", re.S)


def block(name: str, out_dir: Path = OUT) -> str:
    """One experiment's block: hypothesis, rule, numbers, computed outcome, command, provenance."""
    run = read_run(name, out_dir)
    if run["quick"]:
        raise ValueError(f"{out_dir / name}.json is a --quick smoke run; the document shows full runs only")
    lines = [
        f"**Hypothesis.** {run['hypothesis']}",
        "",
        f"**Rule (stated before the run).** {run['rule']}",
        "",
        *EXPERIMENTS[name].table(run["measured"]),
        "",
        f"**Outcome (computed from the rule): {run['outcome']}.** Command: `{run['command']}` "
        f"(commit {run['git_head'][:10]}, code version {run['code_version']}, {run['wall_s']:.0f} s); "
        f"run file `experiments/out/v2/misses/{name}.json`.",
    ]
    return "\n".join(lines) + "\n"


def blocks(out_dir: Path = OUT) -> dict[str, str]:
    """``miss-<name>`` -> markdown of every experiment whose run file exists."""
    return {f"miss-{name}": block(name, out_dir) for name in EXPERIMENTS if (out_dir / f"{name}.json").is_file()}


def render(text: str, generated: Mapping[str, str]) -> str:
    """``text`` with every block named in ``generated`` replaced; other blocks are left as they are."""

    def sub(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in generated:
            return match.group(0)
        return match.group(1) + generated[name] + match.group(3)

    return BLOCK.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    new = render(text, blocks())
    if args.check:
        if new != text:
            print(f"{DOC.relative_to(ROOT)} differs from the run files; run python -m experiments.misses.report", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
