"""benchmarks/f2c.py: the table it writes (fast) and its --quick run end to end (slow: 4 child processes)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "f2c.py"


def _bench():  # noqa: ANN202 - the script as a module
    spec = importlib.util.spec_from_file_location("f2c_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_reports_every_classifier_and_f2c_ratios() -> None:
    bench = _bench()
    assert list(bench.KINDS) == ["full", "partial", "sparse", "f2c"]
    rows = [
        {"classifier": "full", "classes": 100, "ms": 40.0, "peak_mb": 200.0},
        {"classifier": "partial", "classes": 100, "ms": 20.0, "peak_mb": 50.0},
        {"classifier": "sparse", "classes": 100, "ms": 10.0, "peak_mb": 25.0},
        {"classifier": "f2c", "classes": 100, "ms": 5.0, "peak_mb": 10.0},
        {"classifier": "full", "classes": 1000, "error": "failed (address space capped at 1 GiB?)"},
    ]
    lines = bench.table(rows, [100, 1000])
    assert lines[0].startswith("| C | full FC |") and len(lines) == 4
    assert lines[2] == "| 100 | 40 ms, 200 MiB | 20 ms, 50 MiB | 10 ms, 25 MiB | 5 ms, 10 MiB | 0.12 / 0.05 | 0.50 / 0.40 |"
    assert "failed" in lines[3] and lines[3].endswith("| - | - |")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_quick_run_writes_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "f2c.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["meta"]["quick"] is True
    rows = {r["classifier"]: r for r in result["rows"]}
    assert set(rows) == {"full", "partial", "sparse", "f2c"}
    for row in rows.values():
        assert row["classes"] == 2000 and row["ms"] > 0 and "peak_mb" in row
    assert rows["f2c"]["pool"] == 200
    assert out.with_suffix(".md").read_text().startswith("Command: `python benchmarks/f2c.py --quick")
