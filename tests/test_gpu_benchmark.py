"""CPU smoke run of benchmarks/gpu_train.py --tiny: the JSON schema and that every section ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"model_speed", "framework_overhead", "input_pipeline", "partial_fc_nccl"}
VARIANTS = ["fp32", "bf16-mixed", "bf16-mixed+channels_last", "bf16-mixed+channels_last+compile"]


def test_tiny_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu_train.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_train.py"), "--tiny", "--device", "cpu", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["benchmark"] == "gpu_train" and result["setup"]["tiny"] is True
    assert {"device", "torch", "lightning", "cuda", "dali"} <= set(result["environment"])
    sections = result["sections"]
    assert set(sections) == SECTIONS
    for name, section in sections.items():
        assert section["status"] == "ok", (name, section.get("status"), section.get("traceback"))
        assert section["seconds"] >= 0

    rows = sections["model_speed"]["rows"]
    assert [(r["backbone"], r["variant"]) for r in rows] == [("tiny", v) for v in VARIANTS]
    for row in rows[:2]:  # fp32 and bf16-mixed run on a CPU; the channels-last rows are skipped there
        assert row["status"] == "ok" and row["img_per_s"] > 0 and row["ms_per_step"] > 0 and row["peak_mem_gib"] is None
    assert all(r["status"].startswith("skipped") for r in rows[2:])

    over = sections["framework_overhead"]
    assert len(over["plain_s"]) == len(over["lightning_s"]) == over["repeats"] >= 1
    assert over["ratio"] == over["lightning_s_median"] / over["plain_s_median"] > 0
    assert isinstance(over["within_target"], bool)

    data = {r["pipeline"]: r for r in sections["input_pipeline"]["rows"]}
    assert data["recordio + flip (default)"]["img_per_s"] > 0
    assert data["DALI (DaliSource)"]["status"].startswith("skipped")

    pfc = sections["partial_fc_nccl"]
    assert pfc["backend"] == "gloo" and pfc["world_size"] == 1
    assert pfc["allgather_max_abs_err"] == 0.0 and pfc["dist_ce_max_abs_err"] < 1e-4
    assert pfc["checkpoint_weight_shape"] == [result["setup"]["num_classes"], 32]
    assert pfc["checkpoint_roundtrip_max_abs_err"] == 0.0 and pfc["ddp_img_per_s"] > 0

    table = out.with_suffix(".md").read_text()
    assert "| tiny | fp32 |" in table and "ratio (target <= 1.05)" in table and "Partial FC on gloo" in table
