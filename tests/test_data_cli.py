"""``fr data``: synth / convert / make-bin / inspect / align, data config fragments, and a fit on written data."""

from __future__ import annotations

import hashlib
import importlib
import inspect as pyinspect
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fr_lightning.cli import cli_main, main
from fr_lightning.data import (
    DataFormatError,
    RecordIOSet,
    SyntheticPairs,
    SyntheticSource,
    WdsDataset,
    decode_image,
    decode_pairs,
    load_bin,
    read_shard_index,
)
from fr_lightning.data.formats.wds import iter_shard
from fr_lightning.cli import data as data_cli

ROOT = Path(__file__).resolve().parents[1]
SETS = ["synth-lfw", "synth-cfpfp", "synth-lowres", "synth-rfw-g0", "synth-rfw-g1", "synth-rfw-g2", "synth-rfw-g3"]


def _synth(out: Path, fmt: str = "png", identities: int = 4, per: int = 3, size: int = 32, pairs: int = 20) -> None:
    main(["data", "synth", str(out), "--identities", str(identities), "--per-identity", str(per),
          "--image-size", str(size), "--format", fmt, "--pairs", str(pairs)])  # fmt: skip


def _item(rec: RecordIOSet, i: int) -> tuple[np.ndarray, int]:
    buf, label = rec.read(i)
    return decode_image(buf, rec.describe(i)), rec.check_label(label, i)


def _wds_raw(uri: Path) -> list[tuple[bytes, int]]:
    """Every sample's ``(encoded image, label)`` of a shard folder, in file order."""
    index = read_shard_index(uri)
    return [(s.image, s.label) for k in range(len(index.files)) for s in iter_shard(index, k)]  # type: ignore[union-attr]


def _digest(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()


# --------------------------------------------------------------------------- synth


def test_synth_png_round_trip_is_exact(tmp_path: Path) -> None:
    _synth(tmp_path, "png")
    rec = RecordIOSet(tmp_path)
    assert rec.num_classes == 4 and len(rec) == 12 and rec.image_size == (32, 32)
    ids, idx = np.repeat(np.arange(4), 3), np.tile(np.arange(3), 4)
    want = SyntheticSource(num_identities=4, samples_per_identity=3).renderer(32).render(ids, idx)
    for i in range(12):
        img, label = _item(rec, i)
        assert label == want.labels[i]
        np.testing.assert_array_equal(img, want.images[i])
    np.testing.assert_array_equal(np.load(tmp_path / "landmarks.npy"), want.landmarks)
    np.testing.assert_array_equal(np.load(tmp_path / "group.npy"), want.group)
    for name in SETS:
        bins, issame = load_bin(tmp_path / f"{name}.bin")
        assert len(issame) == 20
    # The .bin holds exactly what the in-memory pair set renders.
    bins, issame = load_bin(tmp_path / "synth-cfpfp.bin")
    ps = SyntheticPairs("synth-cfpfp", "cross_pose", pairs=20, set_seed=1).build(32)
    np.testing.assert_array_equal(issame, ps.issame)
    np.testing.assert_array_equal(decode_pairs(bins, "cfpfp"), ps.load(np.arange(40)))


def test_synth_jpeg_within_tolerance(tmp_path: Path) -> None:
    _synth(tmp_path, "jpg", identities=2, per=2, pairs=0)
    assert not list(tmp_path.glob("*.bin"))
    rec = RecordIOSet(tmp_path)
    want = SyntheticSource(num_identities=2, samples_per_identity=2).renderer(32).render(
        np.repeat(np.arange(2), 2), np.tile(np.arange(2), 2)
    )
    for i in range(4):
        img, label = _item(rec, i)
        assert label == want.labels[i]
        assert np.abs(img.astype(int) - want.images[i]).mean() < 6


def test_fit_from_written_recordio_validates_on_bin_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # configs/data/synth-rec.yaml points at data/synth relative to the working directory.
    monkeypatch.chdir(tmp_path)
    _synth(Path("data/synth"), "jpg", identities=6, per=2, size=56, pairs=20)
    cli = cli_main([
        "fit", "--config", str(ROOT / "recipes/arcface.yaml"), "--config", str(ROOT / "configs/data/synth-rec.yaml"),
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.check_val_every_n_epoch=1",
        "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--model.init_args.backbone.init_args.layers=[1,1,1,1]", "--model.init_args.backbone.init_args.width=0.125",
        "--data.init_args.num_workers=0", "--data.init_args.batch_size=8", "--data.init_args.val_batch_size=40",
    ])  # fmt: skip
    assert cli.trainer.state.finished
    assert cli.datamodule.num_classes == cli.model.num_classes == 6
    metrics = cli.trainer.callback_metrics
    assert "train/loss" in metrics
    for name in ("synth-lfw", "synth-cfpfp", "synth-lowres"):
        assert f"val/{name}/acc" in metrics


# --------------------------------------------------------------------------- convert


def _face_folder(root: Path) -> Counter:
    """Identity folders with PNG and JPEG files; returns the multiset of (identity, pixel digest)."""
    rng = np.random.default_rng(0)
    expected: Counter = Counter()
    for c, (name, n) in enumerate([("id_a", 3), ("id_b", 1), ("id_c", 2)]):
        (root / name).mkdir(parents=True)
        for k in range(n):
            img = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            path = root / name / f"{k}.{'jpg' if k == 1 else 'png'}"
            cv2.imwrite(str(path), img)
            expected[(name, _digest(decode_image(path.read_bytes(), str(path))))] += 1
    return expected


def test_folder_to_recordio_to_wds_keeps_identity_image_pairs(tmp_path: Path) -> None:
    expected = _face_folder(tmp_path / "faces")
    names = sorted({name for name, _ in expected})
    main(["data", "convert", str(tmp_path / "faces"), str(tmp_path / "rec")])
    rec = RecordIOSet(tmp_path / "rec")
    assert rec.num_classes == 3 and rec.layout == "insightface"
    got_rec = Counter((names[label], _digest(img)) for img, label in (_item(rec, i) for i in range(len(rec))))
    assert got_rec == expected
    main(["data", "convert", str(tmp_path / "rec"), str(tmp_path / "shards"), "--max-count", "2"])
    index = read_shard_index(tmp_path / "shards")
    assert index.num_classes == 3 and len(index.files) == 3
    got = Counter((names[label], _digest(decode_image(buf, "shard"))) for buf, label in _wds_raw(tmp_path / "shards"))
    assert got == expected
    # folder -> shards directly gives the same multiset too.
    main(["data", "convert", str(tmp_path / "faces"), str(tmp_path / "shards2"), "--to", "wds"])
    got2 = Counter((names[l], _digest(decode_image(b, "s"))) for b, l in _wds_raw(tmp_path / "shards2"))
    assert got2 == expected


def test_recordio_to_wds_carries_side_files(tmp_path: Path) -> None:
    _synth(tmp_path / "rec", identities=3, per=2, pairs=0)
    main(["data", "convert", str(tmp_path / "rec"), str(tmp_path / "sh"), "--landmarks",
          str(tmp_path / "rec/landmarks.npy"), "--group", str(tmp_path / "rec/group.npy")])  # fmt: skip
    ds = WdsDataset(str(tmp_path / "sh"), 32, rank=0, world_size=1)
    ds.augment.hflip = False
    lm, grp = np.load(tmp_path / "rec/landmarks.npy"), np.load(tmp_path / "rec/group.npy")
    rec = RecordIOSet(tmp_path / "rec")
    by_digest = {_digest(_item(rec, i)[0]): i for i in range(len(rec))}
    seen = 0
    for s in ds:
        img = ((s["images"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        i = by_digest[_digest(img)]
        seen += 1
        assert s["labels"] == _item(rec, i)[1] and s["group"] == grp[i]
        np.testing.assert_allclose(s["landmarks"], lm[i])
    assert seen == 6


def test_convert_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f/a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "f/a/0.png"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "f/a/1.png"), np.zeros((24, 20, 3), np.uint8))
    with pytest.raises(SystemExit) as exc:
        main(["data", "convert", str(tmp_path / "f"), str(tmp_path / "rec")])
    assert exc.value.code == 2
    assert "f/a/1.png: image is 24x20, the first image is 20x20" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "inspect", str(tmp_path / "missing")])
    assert "missing: not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- make-bin, inspect, align


def test_make_bin_from_pairs_list(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "c.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    (tmp_path / "pairs.txt").write_text("a.png b.jpg 1\n# comment\nb.jpg c.png 0\n")
    main(["data", "make-bin", str(tmp_path / "pairs.txt"), str(tmp_path / "mine.bin")])
    bins, issame = load_bin(tmp_path / "mine.bin")
    assert issame.tolist() == [True, False]
    assert bins == [(tmp_path / n).read_bytes() for n in ("a.png", "b.jpg", "b.jpg", "c.png")]
    n = data_cli.make_bin(tmp_path / "pairs.txt", tmp_path / "small.bin", image_size=12, fmt="png")
    assert n == 2 and decode_pairs(load_bin(tmp_path / "small.bin")[0], "small").shape == (4, 12, 12, 3)
    (tmp_path / "bad.txt").write_text("a.png b.jpg maybe\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt, line 1"):
        data_cli.make_bin(tmp_path / "bad.txt", tmp_path / "x.bin")


def test_inspect_every_kind_writes_a_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _synth(tmp_path / "rec", identities=3, per=2, pairs=20)
    main(["data", "convert", str(tmp_path / "rec"), str(tmp_path / "sh")])
    _face_folder(tmp_path / "faces")
    info = data_cli.inspect(tmp_path / "rec", tmp_path / "rec.png", samples=4)
    assert (info["classes"], info["images"], info["per_class_max"]) == (3, 6, 2)
    assert "images per class: min 2" in capsys.readouterr().out
    info = data_cli.inspect(tmp_path / "faces", tmp_path / "faces.png", samples=4)
    assert (info["classes"], info["images"], info["per_class_min"], info["per_class_max"]) == (3, 6, 1, 3)
    assert data_cli.inspect(tmp_path / "sh", tmp_path / "sh.png", samples=2)["images"] == 6
    assert data_cli.inspect(tmp_path / "rec/synth-lfw.bin", tmp_path / "bin.png", samples=4)["pairs"] == 20
    for name in ("rec", "faces", "sh", "bin"):
        img = cv2.imread(str(tmp_path / f"{name}.png"))
        assert img is not None and img.shape[0] > 50


def test_align_folder_with_landmarks_file(tmp_path: Path) -> None:
    from fr_lightning.data.synthetic import FaceRenderer

    out = FaceRenderer(seed=0, image_size=150, nuisance_scale=0.0).render(np.arange(2), np.arange(2))
    lines = []
    for k, (img, lm) in enumerate(zip(out.images, out.landmarks)):
        (tmp_path / "raw" / f"p{k}").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "raw" / f"p{k}" / "x.png"), img[:, :, ::-1])
        lines.append(f"p{k}/x.png " + " ".join(f"{v:.3f}" for v in lm.ravel()))
    (tmp_path / "lm.txt").write_text("\n".join(lines) + "\n")
    main(["data", "align", str(tmp_path / "raw"), str(tmp_path / "lm.txt"), str(tmp_path / "aligned")])
    for k in range(2):
        img = cv2.imread(str(tmp_path / "aligned" / f"p{k}" / "x.png"))
        assert img.shape == (112, 112, 3)
    (tmp_path / "bad.txt").write_text("p0/x.png 1 2 3\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt, line 1"):
        data_cli.align(tmp_path / "raw", tmp_path / "bad.txt", tmp_path / "o")


# --------------------------------------------------------------------------- config fragments


@pytest.mark.parametrize("fragment", sorted((ROOT / "configs/data").glob("*.yaml")), ids=lambda p: p.stem)
def test_data_fragment_classes_and_arguments_exist(fragment: Path) -> None:
    """Every class_path in a data fragment imports and accepts its init_args (real paths need not exist)."""
    text = fragment.read_text()
    assert text.startswith("#") and "fr fit --config" in text, "fragments open with a comment giving the command"

    def check(node: object) -> None:
        if isinstance(node, dict):
            if "class_path" in node:
                module, name = node["class_path"].rsplit(".", 1)
                cls = getattr(importlib.import_module(module), name)
                params = pyinspect.signature(cls.__init__).parameters
                unknown = set(node.get("init_args", {})) - set(params)
                assert not unknown, f"{fragment.name}: {node['class_path']} has no argument(s) {unknown}"
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                check(value)

    check(yaml.safe_load(text))
