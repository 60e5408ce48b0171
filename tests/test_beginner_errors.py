"""Mistakes a newcomer makes in the first hour: one paragraph naming cause and fix, a non-zero exit, no traceback.

Each test runs ``fr`` in-process through :func:`fr_lightning.cli.main` (the console script's
function, so the exit code is the one the shell sees) and asserts the exit code, the cause and the
fix in the message, and that no traceback was printed. ``--debug`` / ``FR_DEBUG=1`` bring the
traceback back (the subprocess test). The table in docs/training.md lists them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fr_lightning.backbones import IResNet
from fr_lightning.cli import main
from fr_lightning.cli.mistakes import UserMistake
from tests.test_cli import ARCFACE, TINY

ROOT = Path(__file__).resolve().parents[1]
#: A recipe that does not exist (written with ./ so the docs' path checker knows it is meant to be missing).
MISSING = "./recipes/nope.yaml"


def _fr(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``fr args`` in-process; its exit code and stderr (which must hold no traceback)."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(stop.value.code or 0), err


@pytest.fixture()
def fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A tiny ``fr fit`` command line that logs nowhere and writes under ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FR_DEBUG", raising=False)
    return ["fit", *TINY, "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}", "--trainer.num_sanity_val_steps=0"]


def _faces(root: Path, identities: list[str], per_identity: int = 3, side: int = 56) -> Path:
    for name in identities:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_identity):
            cv2.imwrite(str(root / name / f"{i}.png"), np.full((side, side, 3), 40 * i, np.uint8))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _folder_source(root: Path) -> list[str]:
    return ["--data.init_args.train=fr_lightning.data.FolderSource", f"--data.init_args.train.init_args.root={root}"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable GPU")
@pytest.mark.parametrize("flag", [["--trainer.accelerator=gpu"], ["--trainer.accelerator=cuda"], ["--config", "configs/scale/r50-1gpu.yaml"]])
def test_gpu_asked_of_a_cpu_torch(fit: list[str], flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if flag[0] == "--config":
        flag = ["--config", str(ROOT / flag[1])]
    code, err = _fr([*fit, *flag], capsys)
    assert code == 2
    assert torch.__version__ in err and "CPU-only build" in err  # the cause
    assert "CUDA build of torch" in err and "--trainer.accelerator=cpu" in err  # the fixes


def test_batch_larger_than_the_data(fit: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fr([*fit, "--data.init_args.batch_size=128"], capsys)  # 6 identities x 4 images
    assert code == 1
    assert "data.init_args.batch_size=128" in err and "24 training images" in err
    assert "Incomplete batches are dropped" in err and "batch_size to at most" in err


def test_image_size_that_does_not_fit_the_init_from_backbone(fit: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "backbone.pth"
    torch.save(IResNet([1, 1, 1, 1], embedding_dim=32, width=0.125, input_size=56).state_dict(), weights)
    code, err = _fr([*fit, "--data.init_args.image_size=112", f"--model.init_args.init_from={weights}"], capsys)
    assert code == 2
    assert "data.init_args.image_size=112 does not fit" in err and "49-64 px" in err
    assert "--data.init_args.image_size to the size those weights were trained at (49-64)" in err


def test_image_size_too_small_for_the_data(fit: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fr([*fit, "--data.init_args.image_size=8"], capsys)
    assert code == 2
    assert "data.init_args.image_size" in err and "16 or more" in err


@pytest.mark.parametrize(
    "arg, listed",
    [
        ("--model.init_args.head=fr_lightning.heads.ArcFase", "fr_lightning.heads.ArcFace"),
        ("--model.init_args.head=ArcFase", "fr_lightning.heads.CosFace"),
        ("--model.init_args.backbone=IResNot", "fr_lightning.backbones.MobileFaceNet"),
    ],
)
def test_unknown_head_or_backbone_lists_the_registered_ones(fit: list[str], arg: str, listed: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fr([*fit, arg], capsys)
    assert code == 2
    assert f"unknown {arg.split('.')[2].split('=')[0]} '{arg.split('=', 1)[1]}'" in err and listed in err
    assert len(err.strip().splitlines()) == 1  # one paragraph, not jsonargparse's dump


@pytest.mark.parametrize("key, value", [("head", "fr_lightning.heads.NoSuchFace"), ("backbone", "IResNot")])
def test_unknown_class_in_a_yaml_file_names_the_file(tmp_path: Path, key: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model:\n  init_args:\n    {key}:\n      class_path: {value}\n")
    code, err = _fr(["fit", "--config", str(ARCFACE), "--config", str(bad)], capsys)
    assert code == 2
    assert f"unknown {key} '{value}' (at {bad}: model.init_args.{key}.class_path = '{value}')" in err
    assert ("fr_lightning.heads.ArcFace" if key == "head" else "fr_lightning.backbones.IResNet") in err


def test_recipe_that_does_not_exist(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    code, err = _fr(["fit", "--config", MISSING], capsys)
    assert code == 2
    assert f"config file not found: {Path(MISSING)} " in err and "arcface.yaml" in err


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    head: {class_path: x\n  data: 1\n")
    code, err = _fr(["fit", "--config", str(ARCFACE), "--config", str(bad)], capsys)
    assert code == 2
    assert f"{bad}, line 4, column 7: YAML syntax error" in err and "line 3, column 11" in err


def test_empty_data_folder(fit: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "faces"
    empty.mkdir()
    code, err = _fr([*fit, *_folder_source(empty)], capsys)
    assert code == 1
    assert f"{empty}: no identity sub-folders" in err and "one sub-folder per identity" in err
    code, err = _fr(["data", "convert", str(empty), str(tmp_path / "rec")], capsys)
    assert code == 2 and "no identity sub-folders" in err
    assert not (tmp_path / "rec").exists()


def test_folder_of_one_identity(fit: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faces = _faces(tmp_path / "faces", ["alice"])
    code, err = _fr([*fit, *_folder_source(faces), "--data.init_args.batch_size=2"], capsys)
    assert code == 1
    assert "only one identity (alice, 3 images)" in err and "at least two identities" in err
    main(["data", "convert", str(faces), str(tmp_path / "rec")])  # converts, with a warning
    assert "holds only one identity" in capsys.readouterr().err


def test_validation_set_that_does_not_exist(fit: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "lfw.bin"
    sets = f"--data.init_args.val_sets=[{{class_path: fr_lightning.data.BinPairs, init_args: {{path: {missing}}}}}]"
    code, err = _fr([*fit, sets], capsys)
    assert code == 1
    assert f"verification set not found: {missing}" in err and "data.init_args.val_sets" in err


def test_fr_debug_lets_the_exception_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FR_DEBUG", "1")
    with pytest.raises(UserMistake, match="config file not found"):
        main(["fit", "--config", MISSING])
    monkeypatch.delenv("FR_DEBUG")
    with pytest.raises(UserMistake):
        main(["fit", "--debug", "--config", MISSING])


@pytest.mark.slow
def test_traceback_only_with_debug_from_the_shell(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FR_DEBUG"}
    command = [sys.executable, "-m", "fr_lightning.cli", "fit", "--config", MISSING]
    plain = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "config file not found" in plain.stderr
    debug = subprocess.run([*command, "--debug"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UserMistake: config file not found" in debug.stderr
    env["FR_DEBUG"] = "1"
    debug_env = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert debug_env.returncode == 1 and "Traceback" in debug_env.stderr
