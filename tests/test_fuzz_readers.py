"""Byte-level fuzzing of every reader: mutated files end as correct data or a clean error.

Each format starts from small valid files these tests write, and hypothesis draws mutations of
their bytes: bit flips, truncation, inserted garbage, deleted runs, integers at their limits
written over 2/4/8 bytes (lengths, offsets, counts), numbers in text replaced by limit values,
and single bytes set to separators. Every input must end in one of two ways:

* correct data: the reader returns arrays of the documented shapes and dtypes, every image
  decodes to ``[H, W, 3]`` uint8, and an image whose size differs from the declared one is
  flagged by ``fr data verify`` (never passed on silently);
* a :class:`DataFormatError` whose message names the file (for the command-line readers: a
  ``ValueError`` naming the file).

Anything else fails the test: another exception type, a hang (a per-example alarm of
``HANG_S`` seconds), or a memory blow-up (the address space is capped ``MEMORY_HEADROOM``
above its size at the start, so a length read from a header and trusted before it is checked
against the file raises ``MemoryError``, which fails the test even when a reader wraps it).

The default suite runs ``FR_FUZZ_SHORT`` inputs per format (derandomised, so CI sees the same
inputs every time); ``-m slow`` runs ``FR_FUZZ_LONG`` (2,000 in CI's slow step; the recorded campaign used 10,000) per format with a random seed.
Counts are printed at the end of the module and written to ``$FR_FUZZ_COUNTS`` (JSON) when set.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import resource
import shutil
import signal
import struct
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fr_lightning.data.errors import DataFormatError

SHORT = int(os.environ.get("FR_FUZZ_SHORT", "50"))
LONG = int(os.environ.get("FR_FUZZ_LONG", "2000"))  # 10,000 per format takes ~18 min here: run by hand (docs/reliability.md)
HANG_S = 10.0
MEMORY_HEADROOM = 1 << 30

# --------------------------------------------------------------------------- mutations

#: Integers written over 2, 4 or 8 bytes: zero, one, sign and width boundaries, RecordIO's
#: 29-bit length mask, and the magic word.
LIMIT_INTS = [0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 2**29 - 1, 2**29, 2**31 - 1, 2**31, 2**32 - 1, 0xCED7230A, 2**63 - 1, 2**64 - 1]
#: Replacements for a number in a text file.
LIMIT_TEXT = [b"0", b"-1", b"1", b"-0", b"2147483648", b"4294967296", b"9223372036854775807", b"9223372036854775808", b"1" * 40, b"1e308", b"-1e309", b"nan", b"inf", b"-inf", b"0x10", b"1.5", b"", b" ", b"1_0", b"\xff\xfe"]
#: Single bytes that end lines, split fields or open structures.
SPECIAL_BYTES = [0x00, 0xFF, 0x0A, 0x0D, 0x09, 0x20, 0x2C, 0x22, 0x7B, 0x5B, 0x3A, 0x80, 0xC3]

_POS = st.integers(0, 1 << 20)
_OP = st.one_of(
    st.tuples(st.just("flip"), _POS, st.integers(0, 7)),
    st.tuples(st.just("truncate"), _POS, st.none()),
    st.tuples(st.just("insert"), _POS, st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("delete"), _POS, st.integers(1, 64)),
    st.tuples(st.just("int"), _POS, st.tuples(st.sampled_from(["<H", "<I", "<Q", ">I"]), st.sampled_from(LIMIT_INTS), st.booleans())),
    st.tuples(st.just("number"), _POS, st.sampled_from(LIMIT_TEXT)),
    st.tuples(st.just("byte"), _POS, st.sampled_from(SPECIAL_BYTES)),
)
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def mutate(data: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    """Apply mutations in order; positions wrap around the current length."""
    b = bytearray(data)
    for op, pos, arg in ops:
        n = len(b)
        if op == "flip" and n:
            b[pos % n] ^= 1 << arg
        elif op == "truncate":
            del b[pos % (n + 1) :]
        elif op == "insert":
            i = pos % (n + 1)
            b[i:i] = arg
        elif op == "delete":
            i = pos % (n + 1)
            del b[i : i + arg]
        elif op == "int":
            fmt, value, aligned = arg
            size = struct.calcsize(fmt)
            i = (pos % (n // 4 + 1)) * 4 if aligned else pos % (n + 1)
            b[i : i + size] = struct.pack(fmt, value % (1 << (8 * size)))
        elif op == "number":
            runs = list(_NUMBER.finditer(b))
            if runs:
                m = runs[pos % len(runs)]
                b[m.start() : m.end()] = arg
        elif op == "byte" and n:
            b[pos % n] = arg
    return bytes(b)


def _mutations(num_files: int) -> st.SearchStrategy[list[tuple[int, tuple[str, int, Any]]]]:
    """1-4 mutations, each on one of the format's files."""
    return st.lists(st.tuples(st.integers(0, num_files - 1), _OP), min_size=1, max_size=4)


# --------------------------------------------------------------------------- seeds


def _images(n: int, size: int = 12, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return [np.clip(base.astype(int) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def _jpeg(img: np.ndarray) -> bytes:
    from fr_lightning.data.formats.images import encode_image

    return encode_image(img, quality=90)


def _seed_recordio(root: Path, variant: str) -> None:
    from fr_lightning.data.formats.recordio import MAGIC, RecordIOWriter, pack_header
    from fr_lightning.data.formats.recordio_write import write_recordio

    imgs = _images(6)
    if variant == "insightface":
        write_recordio(root, [(im, i // 2) for i, im in enumerate(imgs)], num_classes=3, image_size=(12, 12))
        return
    # im2rec layout with multi-part records: the magic word after the JPEG end marker (which
    # decoders ignore) splits the record into parts (cflag 1/2/3), and a label vector header.
    root.mkdir(parents=True, exist_ok=True)
    with RecordIOWriter(root / "train.rec", root / "train.idx") as w:
        for i, im in enumerate(imgs):
            head = pack_header(float(i % 3), id=i) if i % 2 else pack_header([float(i % 3), 7.0], id=i)
            payload = head + _jpeg(im)
            payload += b"\0" * (-len(payload) % 4) + struct.pack("<I", MAGIC) * (1 + i % 2) + b"tail"
            w.write(i, payload)
        assert w.num_split == len(imgs)
    (root / "property").write_text("3,12,12\n")


def _seed_bin(root: Path, variant: str) -> None:
    from fr_lightning.data.formats.binfile import write_bin

    bufs = [_jpeg(im) for im in _images(4)]
    path = root / "set.bin"
    root.mkdir(parents=True, exist_ok=True)
    if variant == "bytes-p4":
        write_bin(path, bufs, [True, False])
    elif variant == "ndarray-p2":  # insightface's older files: numpy arrays of the encoded bytes
        path.write_bytes(pickle.dumps(([np.frombuffer(b, np.uint8) for b in bufs], np.array([True, False])), protocol=2))
    else:  # protocol 5: numpy's _frombuffer reduction
        path.write_bytes(pickle.dumps(([np.frombuffer(b, np.uint8).copy() for b in bufs], [True, False]), protocol=5))


def _seed_wds(root: Path, variant: str) -> None:
    from fr_lightning.data.formats.wds_write import WdsWriter

    imgs = _images(5)
    with WdsWriter(root, num_classes=3, image_size=(12, 12), max_count=2) as w:
        for i, im in enumerate(imgs):
            lm = np.arange(10, dtype=np.float32).reshape(5, 2) + i if variant == "side" else None
            w.add(_jpeg(im), i % 3, lm, i % 2 if variant == "side" else None)


_SIDE_KEYS = ["a/0.jpg", "a/1.jpg", "b/0.jpg", "b/1.jpg"]


def _seed_side(root: Path, variant: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lm = np.arange(40, dtype=np.float32).reshape(4, 5, 2) * 1.5
    if variant == "landmarks.txt":
        text = "# key x1 y1 ... x5 y5\n" + "".join(f"{k} " + " ".join(f"{v:g}" for v in row.ravel()) + "\n" for k, row in zip(_SIDE_KEYS, lm))
        (root / variant).write_text(text)
    elif variant == "group.txt":
        (root / variant).write_text("".join(f"{k} {i % 2}\n" for i, k in enumerate(_SIDE_KEYS)))
    elif variant == "landmarks.npy":
        np.save(root / variant, lm)
    else:
        np.save(root / variant, np.array([0, 1, 1, 0], np.int64))


def _seed_ijb(root: Path, variant: str) -> None:
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    names = [f"{i}.jpg" for i in range(6)]
    (meta / "ijbc_face_tid_mid.txt").write_text("".join(f"{n} {i // 2 + 1} {i + 10}\n" for i, n in enumerate(names)))
    (meta / "ijbc_name_5pts_score.txt").write_text("".join(f"{n} " + " ".join(f"{30 + j * 1.25:.2f}" for j in range(10)) + " 0.99\n" for n in names))
    (meta / "ijbc_template_pair_label.txt").write_text("1 2 0\n1 3 1\n2 3 0\n")
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
    (meta / "ijbc_1N_gallery_G1.csv").write_text(header + "1,100,0.jpg\n1,100,1.jpg\n")
    (meta / "ijbc_1N_gallery_G2.csv").write_text(header + "2,200,2.jpg\n")
    (meta / "ijbc_1N_probe_mixed.csv").write_text(header + "3,100,4.jpg\n3,100,5.jpg\n")


def _seed_verification_json(root: Path, variant: str) -> None:
    from fr_lightning.eval.report import write_verification_json

    reports = {"synth-lfw": {"acc": 97.5, "acc_std": 1.25, "threshold": 0.3125, "tar@far=1e-3": 88.0, "auc": 0.99}}
    if variant == "two-sets":
        reports["synth-cfp"] = {"acc": 90.0, "acc_std": 2.0, "threshold": -0.0625, "tar@far=1e-4": float("nan")}
    write_verification_json(root / "verification.json", reports)


def _seed_config(root: Path, variant: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    cb = lambda name: {"class_path": f"fr_lightning.methods.{name}", "init_args": {"weight": 0.5}}  # noqa: E731
    (root / "base.yaml").write_text(yaml.safe_dump({"seed_everything": 0, "trainer": {"max_epochs": 2, "callbacks": [cb("A")]}, "model": {"lr": 0.1}}))
    (root / "frag.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [cb("B")]}}))
    extends: Any = ["base.yaml", "frag.yaml"] if variant == "list" else "base.yaml"
    (root / "recipe.yaml").write_text(yaml.safe_dump({"extends": extends, "model": {"lr": 0.2}, "trainer": {"callbacks": [cb("C")]}}))


def _seed_onnx(root: Path, variant: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(3 * 8 * 8, 4)).astype(np.float32), "w")
    batch: Any = "N" if variant == "dynamic" else 2
    nodes = [helper.make_node("Flatten", ["images"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["embedding"])]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    (root / "model.onnx").write_bytes(model.SerializeToString())


# --------------------------------------------------------------------------- oracles
# Each reads the (mutated) files and checks what comes back; it may raise DataFormatError
# (or, for the command-line readers, ValueError naming the file).


def _check_image(img: np.ndarray) -> None:
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) > 0, img.shape


def _read_recordio(root: Path) -> None:
    from fr_lightning.data.formats.images import decode_image
    from fr_lightning.data.formats.recordio import unpack_header
    from fr_lightning.data.formats.recordio_reader import RecordIOReader
    from fr_lightning.data.formats.recordio_set import RecordIOSet
    from fr_lightning.data.verify import verify

    report = verify(root, progress=False)  # `fr data verify` never raises on a broken set
    for payload in RecordIOReader(root / "train.rec"):  # scan without the index
        unpack_header(payload, str(root / "train.rec"))
    records = RecordIOSet(root)
    labels = records.labels
    assert labels.dtype == np.int64 and len(labels) == len(records) and ((labels >= 0) & (labels < records.num_classes)).all()
    for j in range(len(records)):
        buf, _ = records.read(j)
        img = decode_image(buf, records.describe(j))
        _check_image(img)
        if records.image_size is not None and img.shape[:2] != records.image_size:
            assert not report.ok, f"{records.describe(j)}: {img.shape} image passed by verify"


def _read_bin(root: Path) -> None:
    from fr_lightning.data.formats.binfile import decode_pairs, load_bin
    from fr_lightning.data.verify import verify

    path = root / "set.bin"
    verify(path, progress=False)
    bins, issame = load_bin(path)
    assert issame.dtype == bool and len(bins) == 2 * len(issame)
    assert all(isinstance(b, bytes) for b in bins)
    images = decode_pairs(bins, str(path))
    if len(bins):
        assert images.shape[0] == len(bins) and images.shape[3] == 3 and images.dtype == np.uint8


def _read_wds(root: Path) -> None:
    from fr_lightning.data.formats.images import decode_image
    from fr_lightning.data.formats.wds import iter_shard, raw_samples, read_shard_index
    from fr_lightning.data.verify import verify

    report = verify(root, progress=False)
    index = read_shard_index(root)
    assert index.sizes.dtype == np.int64 and (index.sizes >= 0).all()
    for k in range(len(index.files)):
        for fast in (True, False):
            for _ in raw_samples(index.url(k), fast=fast):
                pass
        for sample in iter_shard(index, k):
            assert isinstance(sample.label, int) and isinstance(sample.image, bytes)
            if sample.landmarks is not None:
                assert sample.landmarks.shape == (5, 2) and sample.landmarks.dtype == np.float32
            img = decode_image(sample.image, f"{index.url(k)}: sample {sample.key!r}")
            _check_image(img)
            if index.image_size is not None and img.shape[:2] != index.image_size:
                assert not report.ok
            if not 0 <= sample.label < index.num_classes:
                assert not report.ok


def _read_side(root: Path) -> None:
    from fr_lightning.data.sources.side_files import load_side_file

    (path,) = [p for p in root.iterdir()]
    kind = "landmarks" if path.name.startswith("landmarks") else "group"
    values = load_side_file(path, _SIDE_KEYS, kind, "the fuzz set")  # type: ignore[arg-type]
    if kind == "landmarks":
        assert values.shape == (4, 5, 2) and values.dtype == np.float32 and np.isfinite(values).all()
    else:
        assert values.shape == (4,) and values.dtype == np.int64 and (values >= 0).all()


def _read_ijb(root: Path) -> None:
    from fr_lightning.eval.ijb.meta import load_ijb

    s = load_ijb(root, "ijbc")
    n = len(s.names)
    assert s.templates.shape == s.medias.shape == (n,) and s.landmarks.shape == (n, 5, 2) and s.faceness.shape == (n,)
    assert np.isfinite(s.landmarks).all() and s.t1.shape == s.t2.shape == s.labels.shape
    assert set(np.unique(s.labels).tolist()) <= {0, 1}
    for g in [*s.galleries.values(), *([s.probes] if s.probes is not None else [])]:
        assert g.templates.shape == g.subjects.shape and g.templates.dtype == np.int64


def _read_verification_json(root: Path) -> None:
    from fr_lightning.eval.report import read_verification_json

    path = root / "verification.json"
    from fr_lightning.cli.verify import read_threshold

    try:
        threshold, name = read_threshold(path, "synth-lfw")
        assert -1.0 <= threshold <= 1.0 and name == "synth-lfw"
    except ValueError as exc:
        if isinstance(exc, UnicodeDecodeError) or (not isinstance(exc, DataFormatError) and str(path) not in str(exc)):
            raise AssertionError(f"read_threshold's error does not name the file: {exc}") from exc
    for name, values in read_verification_json(path).items():
        assert isinstance(name, str) and -1.0 <= values["threshold"] <= 1.0


def _compose() -> Callable[[list[str]], Any]:
    try:
        from fr_lightning.cli.compose import compose
    except ImportError:  # before the command-line modules moved into fr_lightning.cli
        from fr_lightning.tools.config_compose import compose
    return compose


def _read_config(root: Path) -> None:
    try:
        composed = _compose()(["fit", "--config", str(root / "recipe.yaml"), "--config", str(root / "frag.yaml")])
    except ValueError as exc:
        if not any(f"{root / n}" in str(exc) for n in ("recipe.yaml", "frag.yaml", "base.yaml")):
            raise AssertionError(f"config error does not name a file: {exc}") from exc
        raise DataFormatError(str(exc)) from None
    assert all(isinstance(a, str) for a in composed.argv)
    files = {str(root / n) for n in ("recipe.yaml", "frag.yaml", "base.yaml")}
    for flag, value in zip(composed.argv, composed.argv[1:]):
        if flag == "--config" and value not in files:  # a rewritten file, passed as YAML text
            assert isinstance(yaml.safe_load(value), dict)


def _read_onnx(root: Path) -> None:
    from fr_lightning.deploy.runtime import load_embedder

    path = root / "model.onnx"
    try:
        embedder = load_embedder(path)
        s = embedder.image_size
        images = np.zeros((2, 3, s, s), np.float32) if s <= 64 else None
        if images is not None:
            out = embedder.raw(images)
            assert out.ndim == 2 and out.shape[0] == 2 and out.dtype == np.float32, out.shape
    except ValueError as exc:
        if str(path) not in str(exc):
            raise AssertionError(f"onnx error does not name the file: {exc}") from exc
        raise DataFormatError(str(exc)) from None


@dataclass(frozen=True)
class Format:
    """One fuzzed format: how to write its valid seeds, which files to mutate, how to read them."""

    seed: Callable[[Path, str], None]
    variants: tuple[str, ...]
    read: Callable[[Path], None]
    files: Callable[[Path], list[Path]]


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


FORMATS: dict[str, Format] = {
    "recordio": Format(_seed_recordio, ("insightface", "im2rec-multipart"), _read_recordio, _all_files),
    "bin": Format(_seed_bin, ("bytes-p4", "ndarray-p2", "ndarray-p5"), _read_bin, _all_files),
    "wds": Format(_seed_wds, ("side", "plain"), _read_wds, _all_files),
    "side-files": Format(_seed_side, ("landmarks.txt", "group.txt", "landmarks.npy", "group.npy"), _read_side, _all_files),
    "ijb-meta": Format(_seed_ijb, ("ijbc",), _read_ijb, _all_files),
    "verification-json": Format(_seed_verification_json, ("one-set", "two-sets"), _read_verification_json, _all_files),
    "config-extends": Format(_seed_config, ("one", "list"), _read_config, _all_files),
    "onnx": Format(_seed_onnx, ("fixed", "dynamic"), _read_onnx, _all_files),
}

COUNTS: dict[str, Counter[str]] = defaultdict(Counter)
SLOWEST: dict[str, float] = defaultdict(float)

# --------------------------------------------------------------------------- harness


class Hang(BaseException):
    """Raised by the per-example alarm (a BaseException, so no reader's ``except Exception`` eats it)."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"example ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def _memory_cap(headroom: int) -> Iterator[None]:
    """Cap the address space at its current size + ``headroom`` (Linux; a no-op elsewhere)."""
    size = _vm_size()
    if not size:
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


class Seeds:
    """The valid files of each (format, variant), written once, as bytes by relative path."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], dict[str, bytes]] = {}

    def get(self, name: str, variant: str) -> dict[str, bytes]:
        key = (name, variant)
        if key not in self._cache:
            fmt = FORMATS[name]
            with tempfile.TemporaryDirectory() as d:
                root = Path(d) / "data"
                fmt.seed(root, variant)
                fmt.read(root)  # the seed itself must read back as correct data
                self._cache[key] = {str(p.relative_to(root)): p.read_bytes() for p in fmt.files(root)}
        return self._cache[key]


SEEDS = Seeds()


def run_campaign(name: str, examples: int, derandomize: bool) -> Counter[str]:
    """Run ``examples`` mutated inputs of one format; return this campaign's outcome counts."""
    fmt = FORMATS[name]
    counts: Counter[str] = Counter()
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(variant=st.sampled_from(fmt.variants), ops=_mutations(8))
    def one(variant: str, ops: list[tuple[int, tuple[str, int, Any]]]) -> None:
        seed = SEEDS.get(name, variant)
        names = sorted(seed)
        root = work / "data"
        shutil.rmtree(root, ignore_errors=True)
        for rel, data in seed.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        by_file: dict[str, list[tuple[str, int, Any]]] = defaultdict(list)
        for which, op in ops:
            by_file[names[which % len(names)]].append(op)
        for rel, file_ops in by_file.items():
            (root / rel).write_bytes(mutate(seed[rel], file_ops))
        start = time.perf_counter()
        try:
            with _alarm(HANG_S):
                fmt.read(root)
            outcome = "correct data"
        except DataFormatError as exc:
            for e in _chain(exc):
                assert not isinstance(e, (MemoryError, RecursionError)), f"{name}: {type(e).__name__} behind {exc}"
            message = str(exc)
            assert any(part in message for part in [str(root), *names]), f"{name}: error names no file: {message}"
            outcome = "DataFormatError"
        finally:
            SLOWEST[name] = max(SLOWEST[name], time.perf_counter() - start)
        counts[outcome] += 1

    try:
        with _memory_cap(MEMORY_HEADROOM):
            one()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        COUNTS[name].update(counts)
    return counts


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    if not COUNTS:
        return
    table = {name: {**dict(c), "inputs": sum(c.values()), "slowest_s": round(SLOWEST[name], 3)} for name, c in sorted(COUNTS.items())}
    print("\nfuzz campaign:", json.dumps(table, indent=1))
    out = os.environ.get("FR_FUZZ_COUNTS")
    if out:
        Path(out).write_text(json.dumps(table, indent=1) + "\n")


@pytest.mark.timeout(300, method="thread")
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_fuzz_short(name: str) -> None:
    """Short campaign (default suite): ``FR_FUZZ_SHORT`` mutated inputs, derandomised."""
    counts = run_campaign(name, SHORT, derandomize=True)
    assert sum(counts.values()) >= min(SHORT, 10)


@pytest.mark.slow
@pytest.mark.timeout(3600, method="thread")
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_fuzz_long(name: str) -> None:
    """Long campaign (slow step): ``FR_FUZZ_LONG`` (default 2,000) mutated inputs with a random seed."""
    counts = run_campaign(name, LONG, derandomize=False)
    assert sum(counts.values()) >= 0.9 * LONG


def test_mutations_reach_every_kind() -> None:
    """The mutation operators do what they say (a broken mutator would fuzz nothing)."""
    data = bytes(range(16))
    assert mutate(data, [("flip", 3, 0)]) == data[:3] + bytes([2]) + data[4:]
    assert mutate(data, [("truncate", 5, None)]) == data[:5]
    assert mutate(data, [("insert", 2, b"xy")]) == data[:2] + b"xy" + data[2:]
    assert mutate(data, [("delete", 2, 3)]) == data[:2] + data[5:]
    assert mutate(data, [("int", 1, ("<I", 2**32 - 1, True))]) == data[:4] + b"\xff" * 4 + data[8:]
    assert mutate(b"a 12 b 7", [("number", 1, b"-1")]) == b"a 12 b -1"
    assert mutate(data, [("byte", 0, 0xFF)])[0] == 0xFF


def test_read_threshold_names_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    """The fuzzer's one finding outside the readers it fixed at first: a bare UnicodeDecodeError with no file name."""
    from fr_lightning.cli.verify import read_threshold

    path = tmp_path / "verification.json"
    path.write_bytes(b'{"synth-lfw": {"threshold": 0.3, "acc": 97.5, "acc_std": 1.0, "x": "\xff"}}')
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_threshold(path, "synth-lfw")


def test_verification_json_reads_back_what_the_callback_writes(tmp_path: Path) -> None:
    from fr_lightning.eval.report import read_verification_json, write_verification_json

    reports = {"lfw": {"acc": 99.5, "acc_std": 0.25, "threshold": 0.25, "tar@far=1e-4": float("nan")}}
    path = write_verification_json(tmp_path / "verification.json", reports)
    back = read_verification_json(path)
    assert back["lfw"]["threshold"] == 0.25 and np.isnan(back["lfw"]["tar@far=1e-4"])
    path.write_text('{"lfw": {"acc": 99.5, "acc_std": 0.25, "threshold": 1.5}}')
    with pytest.raises(DataFormatError, match=r"verification.json: 'lfw.threshold' is 1.5"):
        read_verification_json(path)


def _planted_seed(root: Path, variant: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "x.dat").write_bytes(bytes(24))


def _planted_wrong_type(root: Path) -> None:
    if (root / "x.dat").read_bytes()[:24] != bytes(24):
        raise KeyError("a reader bug")


def _planted_allocation(root: Path) -> None:
    data = (root / "x.dat").read_bytes()
    if len(data) >= 24:
        n = max(struct.unpack("<6I", data[:24]))
        try:
            bytearray(n if n >= 1 << 31 else 0)  # a length from the file, trusted (small ones skipped: faster)
        except MemoryError as exc:
            raise DataFormatError(f"{root / 'x.dat'}: too large") from exc


def _planted_hang(root: Path) -> None:
    while (root / "x.dat").read_bytes()[:24] != bytes(24):
        pass


@pytest.mark.parametrize(
    ("read", "expected", "match"),
    [(_planted_wrong_type, KeyError, "a reader bug"), (_planted_allocation, AssertionError, "MemoryError behind"), (_planted_hang, Hang, "ran over")],
    ids=["wrong-type", "allocation", "hang"],
)
def test_the_harness_catches_planted_bugs(read: Callable[[Path], None], expected: type[BaseException], match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that raises another type, trusts a length from the file or loops fails the campaign."""
    if read is _planted_hang:
        monkeypatch.setitem(globals(), "HANG_S", 0.5)
    monkeypatch.setitem(FORMATS, "planted", Format(_planted_seed, ("one",), read, _all_files))
    try:
        with pytest.raises(expected, match=match):
            run_campaign("planted", 100, derandomize=True)
    finally:
        COUNTS.pop("planted", None)
        SLOWEST.pop("planted", None)
