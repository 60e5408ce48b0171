"""Every v2 study command: its claim names it, and its --quick smoke run writes complete, traceable run files."""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path

import pytest

from experiments.claims import CLAIMS
from experiments.seeds import CALIBRATION_SEEDS

#: every distinct study command of the declared claims (module, its own options)
COMMANDS = sorted({claim.command for claim in CLAIMS.values()})


def _module_and_options(command: str) -> tuple[str, list[str]]:
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"], command
    return words[2], words[3:]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_claim_command_is_a_study_module_with_a_quick_mode(command: str) -> None:
    module, _options = _module_and_options(command)
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_quick_study_writes_every_variant_with_its_provenance(command: str, tmp_path: Path) -> None:
    module, options = _module_and_options(command)
    results = importlib.import_module(module).main([*options, "--quick", "--out-dir", str(tmp_path)])
    indexes = [p for p in tmp_path.glob("*/study.json") if p.parent.name.endswith("quick")]
    assert indexes, f"{command} --quick wrote no study.json under {tmp_path}"
    index = max(indexes, key=lambda p: len(json.loads(p.read_text())["runs"]))
    summary = json.loads(index.read_text())
    assert summary["seeds"] == [CALIBRATION_SEEDS[0]]
    assert set(summary["runs"]) == set(results)
    for variant, files in summary["runs"].items():
        assert len(files) == 1
        run = json.loads((index.parent / files[0]).read_text())
        assert run["variant"] == variant and run["seed"] == CALIBRATION_SEEDS[0]
        assert run["code_version"] and run["git_head"] and run["config"]["data"]
        assert any(a == f"--seed_everything={CALIBRATION_SEEDS[0]}" for a in run["args"]) or run["config"]["seed_everything"] == CALIBRATION_SEEDS[0]
        assert any(k.startswith("val/") and k.endswith("/acc") for k in run), f"{variant}: no verification accuracy"
