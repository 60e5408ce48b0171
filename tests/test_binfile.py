"""Verification .bin files: round trip, Python 2 / numpy variants, and refusing unsafe pickles."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from fr_lightning.data import DataFormatError, decode_pairs, encode_image, load_bin, write_bin


def _images(n: int, size: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(n)]


def _png(n: int) -> list[bytes]:
    return [encode_image(im, img_fmt=".png") for im in _images(n)]


def test_write_load_roundtrip(tmp_path: Path) -> None:
    imgs = _images(4)
    path = tmp_path / "lfw.bin"
    write_bin(path, imgs, [True, False], img_fmt=".png")
    bins, issame = load_bin(path)
    assert all(isinstance(b, bytes) for b in bins) and len(bins) == 4
    assert issame.dtype == bool and issame.tolist() == [True, False]
    decoded = decode_pairs(bins, str(path))
    assert decoded.shape == (4, 12, 12, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.stack(imgs))
    # Already-encoded bytes are stored unchanged.
    write_bin(path, bins, [1, 0])
    assert load_bin(path)[0] == bins


def _py2_pickle(items: list[bytes | np.ndarray], issame: list[bool]) -> bytes:
    """Hand-assemble a protocol-2 pickle the way Python 2 writes one (py2 `str` = BINSTRING)."""

    def binstring(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def py2_uint8_array(arr: np.ndarray) -> bytes:
        # numpy.core.multiarray._reconstruct(ndarray, (0,), 'b') then BUILD with the state
        # (1, shape, dtype('u1'), is_fortran, raw bytes); dtype state (3, '|', ..., 0).
        return (
            b"cnumpy.core.multiarray\n_reconstruct\n"
            + b"cnumpy\nndarray\n" + b"K\x00\x85" + binstring(b"b") + b"\x87R"
            + b"(K\x01" + b"J" + struct.pack("<i", arr.size) + b"\x85"
            + b"cnumpy\ndtype\n" + binstring(b"u1") + b"K\x00K\x01\x87R"
            + b"(K\x03" + binstring(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            + b"\x89" + binstring(arr.tobytes()) + b"tb"
        )

    out = b"\x80\x02(" + b"]("
    for item in items:
        out += binstring(item) if isinstance(item, bytes) else py2_uint8_array(item)
    out += b"e](" + b"".join(b"\x88" if s else b"\x89" for s in issame) + b"e"
    return out + b"t."


def test_python2_file_needs_bytes_encoding(tmp_path: Path) -> None:
    pngs = _png(4)
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(_py2_pickle(pngs, [False, True]))
    with pytest.raises(UnicodeDecodeError):  # what a plain default-encoding load does
        pickle.loads(path.read_bytes())
    bins, issame = load_bin(path)
    assert bins == pngs and issame.tolist() == [False, True]
    # numpy uint8 arrays of encoded bytes inside a Python 2 file.
    path.write_bytes(_py2_pickle([np.frombuffer(p, np.uint8) for p in pngs], [True, True]))
    bins, issame = load_bin(path)
    assert bins == pngs and issame.tolist() == [True, True]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_bins_and_bool_variants(tmp_path: Path, protocol: int) -> None:
    pngs = _png(4)
    path = tmp_path / "cfp_fp.bin"
    arrays = [np.frombuffer(p, dtype=np.uint8).copy() for p in pngs]
    path.write_bytes(pickle.dumps((arrays, [np.bool_(True), np.bool_(False)]), protocol=protocol))
    bins, issame = load_bin(path)
    assert bins == pngs and issame.tolist() == [True, False]
    path.write_bytes(pickle.dumps((pngs, np.array([False, True])), protocol=protocol))
    assert load_bin(path)[1].tolist() == [False, True]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(([_Evil(marker), b"x"], [True]), protocol=4))
    with pytest.raises(DataFormatError) as err:
        load_bin(path)
    assert str(path) in str(err.value) and "refusing to unpickle" in str(err.value)
    assert "system" in str(err.value)
    assert not marker.exists()
    # Object arrays are refused too (they would be a door to arbitrary objects).
    path.write_bytes(pickle.dumps(([np.array([b"a"], dtype=object)] * 2, [True]), protocol=4))
    with pytest.raises(DataFormatError, match="refusing numpy dtype"):
        load_bin(path)


def test_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "calfw.bin"
    pngs = _png(3)
    path.write_bytes(pickle.dumps((pngs, [True]), protocol=4))
    with pytest.raises(DataFormatError, match=r"calfw\.bin: odd number of images \(3\)"):
        load_bin(path)
    path.write_bytes(pickle.dumps((pngs[:2], [True, False]), protocol=4))
    with pytest.raises(DataFormatError, match=r"calfw\.bin: 2 images but 2 pairs"):
        load_bin(path)
    path.write_bytes(pickle.dumps({"bins": pngs}, protocol=4))
    with pytest.raises(DataFormatError, match=r"calfw\.bin: expected a pickled \(bins, issame_list\)"):
        load_bin(path)
    path.write_bytes(pickle.dumps(([1, 2], [True]), protocol=4))
    with pytest.raises(DataFormatError, match=r"calfw\.bin: image 0 is a int"):
        load_bin(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DataFormatError, match=r"calfw\.bin: not a readable \.bin pickle"):
        load_bin(path)


def test_decode_pairs_names_corrupt_index() -> None:
    bins = _png(2) + [b"garbage"]
    with pytest.raises(DataFormatError, match=r"cplfw\.bin: image 2: cannot decode image"):
        decode_pairs(bins, "cplfw.bin")
