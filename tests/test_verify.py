"""Data integrity: `fr data verify` finds bad keys; corrupt samples fail clearly or are skipped and logged as data/skipped."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from fr_lightning.cli import main
from fr_lightning.data import DataFormatError, FaceDataModule, RecordIOReader, RecordIOSource, write_recordio
from fr_lightning.data.formats.tar import ustar_members
from fr_lightning.data.formats.wds import raw_samples
from fr_lightning.data.verify import verify
from tests.helpers import tiny_module, tiny_trainer

SIZE = 16


def _smooth(n: int, size: int = SIZE) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    return [np.clip(rng.integers(40, 200, 3) + 3 * (yy[..., None] + xx[..., None]), 0, 255).astype(np.uint8) for _ in range(n)]


def _rec(root: Path, labels: list[int], size: int = SIZE) -> RecordIOReader:
    write_recordio(root, zip(_smooth(len(labels), size), labels), img_fmt=".jpg")
    return RecordIOReader(root / "train.rec", root / "train.idx")


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    buf = bytearray(path.read_bytes())
    buf[offset : offset + len(data)] = data
    path.write_bytes(bytes(buf))


def test_verify_finds_an_undecodable_jpeg_and_a_damaged_record_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reader = _rec(tmp_path, [0, 0, 1, 1, 2])
    assert verify(tmp_path, progress=False).ok
    jpeg_at, head_at = reader.offset_of(2), reader.offset_of(4)
    reader.close()
    rec = tmp_path / "train.rec"
    _overwrite(rec, jpeg_at + 8 + 24, b"\0" * 64)  # JPEG bytes of key 2: no longer decodable
    _overwrite(rec, head_at, b"\xde\xad\xbe\xef")  # magic word of key 4's record
    report = verify(tmp_path, progress=False)
    assert not report.ok and report.checked == 5
    assert any("record for key 2: cannot decode image" in b for b in report.bad)
    assert any("for key 4" in b and "does not point at a record" in b for b in report.bad)
    assert any("scan of" in p and "train.rec stopped" in p for p in report.problems)
    with pytest.raises(SystemExit) as exc:
        main(["data", "verify", str(tmp_path), "--no-progress"])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert "2 bad" in out and "key 2" in out and "FAILED" in out


def test_verify_checks_labels_against_property_and_idx_against_rec(tmp_path: Path) -> None:
    _rec(tmp_path, [0, 1, 2]).close()
    (tmp_path / "property").write_text(f"2,{SIZE},{SIZE}\n")
    report = verify(tmp_path, progress=False)
    assert any("key 3 has label 2.0, outside [0, 2)" in b for b in report.bad)
    assert any("says 2 classes, the header record lists 3" in p for p in report.problems)
    (tmp_path / "property").write_text(f"3,{SIZE},{SIZE}\n")
    idx = tmp_path / "train.idx"
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join(lines[:-1] + [f"99\t{(tmp_path / 'train.rec').stat().st_size + 100}"]) + "\n")
    report = verify(tmp_path, progress=False)
    assert any("offset" in p and "for key 99 is past the end of" in p for p in report.problems)


def test_verify_wds_names_the_bad_sample(tmp_path: Path) -> None:
    _rec(tmp_path / "rec", [0, 0, 1, 1, 2, 2]).close()
    main(["data", "convert", str(tmp_path / "rec"), str(tmp_path / "wds"), "--to", "wds", "--no-shuffle", "--max-count", "4"])
    assert verify(tmp_path / "wds", progress=False).ok
    shard = tmp_path / "wds" / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        member = tar.getmember("000000001.jpg")
    _overwrite(shard, member.offset_data, b"\0" * 64)
    report = verify(tmp_path / "wds", progress=False)
    assert report.checked == 6 and len(report.bad) == 1
    assert "shard-000000.tar: sample '000000001': cannot decode image" in report.bad[0]


def test_fast_tar_reader_matches_tarfile_and_falls_back(tmp_path: Path) -> None:
    import webdataset

    # webdataset's own writer with a float mtime puts a pax header before every member.
    for name, fmt in (("pax.tar", None), ("gnu.tar", "GNU_FORMAT")):
        with webdataset.TarWriter(str(tmp_path / name), encoder=False, mtime=1.5, format=fmt) as w:
            for i in range(3):
                w.write({"__key__": f"{'d' * 120}/s{i}" if fmt else f"s{i}", "png": bytes([i]) * 700, "cls": b"%d" % i})
    url = str(tmp_path / "pax.tar")
    with open(url, "rb") as f:
        assert [m["fname"] for m in ustar_members(f, url)] == [f"s{i}.{e}" for i in range(3) for e in ("cls", "png")]
    for name in ("pax.tar", "gnu.tar"):
        url = str(tmp_path / name)
        fast = [{k: v for k, v in s.items() if not k.startswith("__local")} for s in raw_samples(url)]
        slow = [{k: v for k, v in s.items() if not k.startswith("__local")} for s in raw_samples(url, fast=False)]
        assert fast == slow and len(fast) == 3 and fast[2]["png"] == bytes([2]) * 700


def test_skipped_records_are_logged_as_data_skipped(tmp_path: Path) -> None:
    reader = _rec(tmp_path, [0, 0, 1, 1, 2, 2, 3, 3], size=56)
    at = reader.offset_of(3)
    reader.close()
    _overwrite(tmp_path / "train.rec", at + 8 + 24, b"\0" * 64)
    with pytest.raises(DataFormatError, match=r"train\.rec: record for key 3: cannot decode image"):
        RecordIOSource(str(tmp_path)).dataset(56, hflip=False)[2]
    dm = FaceDataModule(train=RecordIOSource(str(tmp_path), skip_corrupt=True), val_sets=[], image_size=56, batch_size=4, num_workers=0)
    trainer = tiny_trainer(tmp_path, max_epochs=1, log_every_n_steps=1)
    trainer.fit(tiny_module(num_classes=4), datamodule=dm)
    assert dm.skipped == 1
    assert float(trainer.callback_metrics["data/skipped"]) == 1.0
