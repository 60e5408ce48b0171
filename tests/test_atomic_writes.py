"""Nothing half-written: refused inputs and a full disk leave no partial output and keep the previous one.

A full disk is simulated by replacing ``open`` in the writing module with one whose files raise
``OSError(ENOSPC)`` once a byte budget shared by every file opened for writing is spent (the
bytes up to the budget are written first, as a real disk fills).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from fr_lightning.data.errors import DataFormatError


class _FullFile:
    """A writable file that raises ENOSPC once the shared budget is spent."""

    def __init__(self, f: Any, budget: list[int]) -> None:
        self._f, self._budget = f, budget

    def write(self, data: Any) -> int:
        n = len(data)
        if n > self._budget[0]:
            self._f.write(data[: self._budget[0]])
            self._budget[0] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._budget[0] -= n
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@contextlib.contextmanager
def full_disk(budget: int, *modules: str) -> Iterator[list[int]]:
    """While active, files opened for writing through ``open`` in ``modules`` share ``budget`` bytes."""
    left = [budget]

    def limited_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = builtins.open(file, mode, *args, **kwargs)
        return _FullFile(f, left) if any(c in mode for c in "wa+") else f

    mods = [importlib.import_module(m) for m in modules]
    for m in mods:
        m.open = limited_open  # type: ignore[attr-defined]
    try:
        yield left
    finally:
        for m in mods:
            del m.open  # type: ignore[attr-defined]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _face_folder(root: Path, sizes: list[int]) -> Path:
    """Identity folders ``id<k>/`` holding PNGs of the given sides (image ``i`` in identity ``i % 3``)."""
    rng = np.random.default_rng(0)
    for i, s in enumerate(sizes):
        d = root / f"id{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / f"{i:03d}.png"), rng.integers(0, 256, (s, s, 3), dtype=np.uint8))
    return root


RECORDIO_FILES = {"train.rec", "train.idx", "property"}


# --------------------------------------------------------------------------- fr data convert


def _data_main() -> Any:
    try:
        from fr_lightning.cli.data import main
    except ImportError:  # before the command-line modules moved into fr_lightning.cli
        from fr_lightning.tools.data_cli import main
    return main


def test_refused_convert_leaves_no_recordio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Unaligned photos of mixed sizes: `fr data convert` refuses after writing some records, and no
    train.rec/.idx/property (nor a temporary file) stays behind."""
    src = _face_folder(tmp_path / "photos", [16] * 7 + [20] + [16] * 3)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        _data_main()(["convert", str(src), str(out)])
    assert exit_info.value.code != 0
    assert "image is 20x20, the first image is 16x16" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_refused_convert_keeps_the_previous_recordio(tmp_path: Path) -> None:
    from fr_lightning.data.convert import folder_to_recordio
    from fr_lightning.data.verify import verify

    out = tmp_path / "out"
    assert folder_to_recordio(_face_folder(tmp_path / "good", [16] * 6), out) == 6
    before = _snapshot(out)
    assert set(before) == RECORDIO_FILES
    with pytest.raises(DataFormatError, match="20x20"):
        folder_to_recordio(_face_folder(tmp_path / "mixed", [16] * 5 + [20]), out)
    assert _snapshot(out) == before
    assert verify(out, progress=False).ok


@pytest.mark.parametrize("budget", [0, 100, 1500])
def test_full_disk_during_recordio_conversion(tmp_path: Path, budget: int) -> None:
    """ENOSPC part-way through train.rec (or its .idx): a clear error naming the file, no partial
    output, the previous good set byte-identical and still verifying."""
    from fr_lightning.data.convert import folder_to_recordio
    from fr_lightning.data.verify import verify

    out = tmp_path / "out"
    folder_to_recordio(_face_folder(tmp_path / "good", [16] * 6), out)
    before = _snapshot(out)
    src = _face_folder(tmp_path / "bigger", [16] * 12)
    with full_disk(budget, "fr_lightning.data.formats.recordio"), pytest.raises(OSError) as info:
        folder_to_recordio(src, out)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value.filename) in {str(out / "train.rec"), str(out / "train.idx")}
    assert "No space left on device" in str(info.value)
    assert _snapshot(out) == before
    assert verify(out, progress=False).ok


def test_full_disk_during_wds_conversion(tmp_path: Path) -> None:
    from fr_lightning.data.convert import folder_to_wds
    from fr_lightning.data.verify import verify

    out = tmp_path / "shards"
    folder_to_wds(_face_folder(tmp_path / "good", [16] * 6), out, max_count=2)
    before = _snapshot(out)
    with full_disk(6000, "fr_lightning.data.formats.wds_write"), pytest.raises(OSError) as info:
        folder_to_wds(_face_folder(tmp_path / "more", [16] * 12), out, max_count=2)
    assert info.value.errno == errno.ENOSPC
    assert _snapshot(out) == before
    assert verify(out, progress=False).ok


def test_refused_wds_conversion_writes_no_shard(tmp_path: Path) -> None:
    from fr_lightning.data.convert import folder_to_wds

    src = _face_folder(tmp_path / "photos", [16] * 6)
    (src / "id1" / "zzz.png").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="zzz.png"):
        folder_to_wds(src, tmp_path / "shards", max_count=2, shuffle=False)
    assert not list((tmp_path / "shards").iterdir())


# --------------------------------------------------------------------------- .bin (fr data make-bin / synth)


def test_full_disk_during_bin_write_keeps_the_previous_bin(tmp_path: Path) -> None:
    from fr_lightning.data.formats.binfile import load_bin, write_bin

    path = tmp_path / "lfw.bin"
    img = np.zeros((8, 8, 3), np.uint8)
    write_bin(path, [img] * 2, [True])
    before = path.read_bytes()
    with full_disk(50, "fr_lightning.utils.atomic"), pytest.raises(OSError) as info:
        write_bin(path, [img + 1] * 4, [True, False])
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before and len(load_bin(path)[1]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["lfw.bin"]


# --------------------------------------------------------------------------- fr data align


def test_aligned_folder_is_written_all_or_nothing(tmp_path: Path) -> None:
    from fr_lightning.data.align import write_image_folder

    out = tmp_path / "aligned"
    img = np.full((8, 8, 3), 7, np.uint8)
    assert write_image_folder(out, [("a/1.jpg", img), ("b/2.png", img)]) == 2
    before = _snapshot(out)
    assert set(before) == {"a/1.jpg", "b/2.png"}

    def failing() -> Iterator[tuple[str, np.ndarray]]:
        yield "a/1.jpg", img + 1
        raise DataFormatError("landmarks.txt: cannot read image c/3.jpg")

    with pytest.raises(DataFormatError):
        write_image_folder(out, failing())
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["aligned"]
    assert write_image_folder(out, [("c/3.png", img)]) == 1  # a finished run replaces the folder
    assert set(_snapshot(out)) == {"c/3.png"}


# --------------------------------------------------------------------------- checkpoints


def test_full_disk_during_checkpoint_save_keeps_last_ckpt(tmp_path: Path) -> None:
    from fr_lightning.tracking.checkpointing import AtomicCheckpointIO
    from fr_lightning.tracking.resume import checkpoint_is_valid

    last = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, last)
    for budget in (0, 10, 3000):
        with full_disk(budget, "fr_lightning.utils.atomic"), pytest.raises(OSError) as info:
            io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, last)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(last)
        assert checkpoint_is_valid(last)
        assert torch.load(last, weights_only=True)["global_step"] == 1
        assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]


class DiskFullAt(pl.Callback):
    """Fills the disk (for checkpoint writes) after training step ``step``, before it is checkpointed."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._stack = contextlib.ExitStack()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if trainer.global_step == self.step:
            self._stack.enter_context(full_disk(0, "fr_lightning.utils.atomic"))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stack.close()  # the disk has room again for whatever runs next

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stack.close()


@pytest.mark.slow
def test_full_disk_mid_fit_then_resume_from_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit whose checkpoint save hits ENOSPC at step 3 stops with the error; last.ckpt still holds
    step 2 and ``--ckpt_path last`` resumes from it to the end."""
    from fr_lightning.cli import cli_main
    from tests.test_resume import RUN

    monkeypatch.chdir(tmp_path)
    full = "--trainer.callbacks+={class_path: tests.test_atomic_writes.DiskFullAt, init_args: {step: 3}}"
    with pytest.raises(OSError) as info:
        cli_main(["fit", *RUN, full])
    assert info.value.errno == errno.ENOSPC and str(info.value.filename).endswith(".ckpt")
    assert "open" not in vars(importlib.import_module("fr_lightning.utils.atomic"))  # the disk has room again
    (run_dir,) = (tmp_path / "runs" / "fr-lightning").iterdir()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 2
    assert not [p for p in last.parent.iterdir() if ".tmp-" in p.name]
    cli = cli_main(["fit", *RUN, "--ckpt_path=last"])
    assert cli.trainer.global_step == 6
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6


# --------------------------------------------------------------------------- fr export / fr embed


@pytest.mark.slow
def test_full_disk_during_onnx_export_keeps_the_previous_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC while `fr export` writes model.onnx: exit 1 naming the file, the previous model.onnx
    byte-identical, no temporary file left."""
    pytest.importorskip("onnxruntime")
    from fr_lightning.cli import export as export_tool
    from tests.test_export import TINY_BACKBONE, write_run

    ckpt = write_run(tmp_path / "run", TINY_BACKBONE)
    model = tmp_path / "model.onnx"
    export_tool.main([str(ckpt), str(model)])
    before = model.read_bytes()
    write_run(tmp_path / "run", TINY_BACKBONE, seed=1)  # other weights
    with full_disk(1000, "onnx"), pytest.raises(SystemExit) as exit_info:
        export_tool.main([str(ckpt), str(model)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(model) in err
    assert model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "run"]


def test_failed_pth_export_leaves_no_file(tmp_path: Path) -> None:
    """A bare torch.save failing part-way (ENOSPC) in `fr export --format pth` keeps the previous file."""
    from fr_lightning.cli import export as export_tool

    module_state = {"state_dict": {"backbone.w": torch.ones(3)}}
    ckpt = tmp_path / "last.ckpt"
    torch.save(module_state, ckpt)
    out = tmp_path / "backbone.pth"
    assert "wrote 1 tensors" in export_tool.export(ckpt, out)[0]
    before = out.read_bytes()
    torch.save({"state_dict": {"backbone.w": torch.zeros(3000)}}, ckpt)
    real_save = torch.save

    def full_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        with builtins.open(f, "wb") as fh:
            real_save(obj, _FullFile(fh, [100]), *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export_tool.torch, "save", full_save)
        with pytest.raises((OSError, RuntimeError)):
            export_tool.export(ckpt, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.pth", "last.ckpt"]


def test_full_disk_during_embed_keeps_the_previous_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC while `fr embed` writes OUT.npy: exit 1 naming the file; the previous OUT.npy and its
    OUT.files.txt stay as they were (they are renamed together)."""
    pytest.importorskip("onnxruntime")
    from fr_lightning.cli.embed import main as embed_main
    from tests.test_fuzz_readers import _seed_onnx

    _seed_onnx(tmp_path, "dynamic")  # tmp_path/model.onnx: [N, 3, 8, 8] -> [N, 4]
    images = tmp_path / "faces"
    images.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(images / f"{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    out = tmp_path / "emb.npy"
    embed_main([str(tmp_path / "model.onnx"), str(images), str(out), "--no-progress"])
    before = _snapshot(tmp_path)
    assert np.load(out).shape == (3, 4) and (tmp_path / "emb.files.txt").read_text().split() == ["0.png", "1.png", "2.png"]
    (images / "3.png").write_bytes((images / "0.png").read_bytes())
    with full_disk(64, "fr_lightning.cli.embed"), pytest.raises(SystemExit) as exit_info:
        embed_main([str(tmp_path / "model.onnx"), str(images), str(out), "--no-progress"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "emb.npy" in err
    assert _snapshot(tmp_path) == {**before, "faces/3.png": (images / "3.png").read_bytes()}
