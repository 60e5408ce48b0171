"""Read and write insightface verification sets (``lfw.bin``, ``cfp_fp.bin``, ...).

A ``.bin`` file is a pickle of ``(bins, issame_list)``: ``bins`` holds 2N encoded images
(bytes, or uint8 numpy arrays of the encoded bytes) and ``issame_list`` N booleans; pair i is
``(bins[2i], bins[2i + 1])``.

Unpickling can run arbitrary code, so :func:`load_bin` uses :class:`SafeBinUnpickler`, which
resolves only the handful of globals these files need (numpy's array/dtype/scalar
reconstructors restricted to plain numeric dtypes, ``bytearray``, and the ``_codecs.encode``
call Python 3 emits for bytes in protocol-2 pickles) and refuses everything else before
anything is called.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import pickletools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.images import decode_image, encode_image
from fr_lightning.utils.atomic import atomic_write

__all__ = ["SafeBinUnpickler", "load_bin", "write_bin", "decode_pairs"]

#: Opcodes whose argument indexes the unpickler's memo table.
_MEMO_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})

# dtype kinds a .bin may contain: bool (issame), signed/unsigned ints (image bytes), floats.
_ALLOWED_DTYPE_KINDS = frozenset("biuf")


def _numpy_attr(name: str) -> Any:
    """Find a private numpy helper under ``numpy._core`` (NumPy 2) or ``numpy.core`` (NumPy 1)."""
    module_name, attr = name.rsplit(".", 1)
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module_name}"), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name}")


_np_reconstruct = _numpy_attr("multiarray._reconstruct")
_np_scalar = _numpy_attr("multiarray.scalar")


def _checked_dtype(dt: np.dtype, where: str) -> np.dtype:
    if dt.kind not in _ALLOWED_DTYPE_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise DataFormatError(f"{where}: refusing numpy dtype {dt!r} (only plain numeric dtypes)")
    return dt


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` in a pickle: accepted as ``_reconstruct``'s subtype, never callable
    (``ndarray(shape)`` from a pickle would allocate whatever shape the file names)."""


_NDARRAY = _NdarrayMarker()


class SafeBinUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a verification ``.bin`` needs.

    Args:
        file: Binary file object to read from.
        where: Name of the file, used in error messages.
        encoding: Passed to :class:`pickle.Unpickler` (``'bytes'`` for Python 2 files).
    """

    def __init__(self, file: io.BufferedIOBase, where: str, encoding: str = "ASCII") -> None:
        super().__init__(file, encoding=encoding)
        self.where = where

    # Wrappers that validate arguments before calling into numpy.
    def _dtype(self, obj: Any, align: Any = False, copy: Any = True) -> np.dtype:
        if isinstance(obj, bytes):
            obj = obj.decode("ascii")
        if not isinstance(obj, str):
            raise DataFormatError(f"{self.where}: refusing numpy dtype spec {type(obj).__name__}")
        try:
            dt = np.dtype(obj)
        except TypeError as exc:
            raise DataFormatError(f"{self.where}: bad numpy dtype {obj!r}: {exc}") from None
        return _checked_dtype(dt, self.where)

    def _reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise DataFormatError(f"{self.where}: refusing to build array subtype {subtype!r}")
        # NumPy pickles an empty (0,) array here and sets the real shape and bytes in BUILD;
        # anything larger would allocate memory that the file does not hold.
        if not isinstance(shape, tuple) or len(shape) != 1 or shape[0] not in (0, 1):
            raise DataFormatError(f"{self.where}: refusing numpy _reconstruct shape {shape!r}")
        return _np_reconstruct(np.ndarray, shape, typecode)

    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        if isinstance(data, str):  # Python 2 `str` read with an ASCII-compatible encoding
            data = data.encode("latin1")
        if not isinstance(dtype, np.dtype) or not isinstance(data, (bytes, bytearray)):
            raise DataFormatError(f"{self.where}: refusing numpy scalar of {dtype!r}")
        return _np_scalar(_checked_dtype(dtype, self.where), data)

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
        # NumPy's protocol-5 array reduction: (_frombuffer, (buffer, dtype, shape, order)).
        if not isinstance(dtype, np.dtype) or not isinstance(buf, (bytes, bytearray, memoryview)):
            raise DataFormatError(f"{self.where}: refusing numpy buffer of {dtype!r}")
        dt = _checked_dtype(dtype, self.where)
        try:
            shape = tuple(int(s) for s in shape)
            return np.frombuffer(buf, dtype=dt).reshape(shape, order="F" if order == "F" else "C")
        except (TypeError, ValueError) as exc:
            raise DataFormatError(f"{self.where}: bad numpy buffer: {exc}") from None

    def _codecs_encode(self, obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        # Python 3 pickles bytes under protocol < 3 as _codecs.encode(str, 'latin1').
        if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise DataFormatError(f"{self.where}: refusing _codecs.encode with {encoding!r}")
        return codecs.encode(obj, "latin1")

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        """Map the allowed globals to (wrapped) callables; refuse the rest."""
        allowed: dict[tuple[str, str], Callable[..., Any]] = {
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): self._dtype,
            ("builtins", "bytearray"): bytearray,
            ("__builtin__", "bytearray"): bytearray,
            ("_codecs", "encode"): self._codecs_encode,
        }
        for core in ("numpy.core", "numpy._core"):
            allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
            allowed[(f"{core}.multiarray", "scalar")] = self._scalar
            allowed[(f"{core}.numeric", "_frombuffer")] = self._frombuffer
        try:
            return allowed[(module, name)]
        except KeyError:
            raise DataFormatError(
                f"{self.where}: refusing to unpickle {module}.{name} (a .bin verification file "
                "holds only images and booleans; this file may be malicious or not a .bin)"
            ) from None


def _check_opcodes(data: bytes, where: str) -> None:
    """Walk the pickle's opcodes without executing them; every length prefix (bytes, strings,
    frames) is checked against the bytes that remain, so no length read from the file is ever
    allocated before it is known to be there. Memo indices must not run ahead of the opcodes
    (a pickler numbers them 0, 1, 2, ...): the unpickler sizes its memo table by the index."""
    try:
        for count, (op, arg, pos) in enumerate(pickletools.genops(data)):
            if op.name in _MEMO_OPS and isinstance(arg, int) and not 0 <= arg <= count:
                raise ValueError(f"memo index {arg} at byte {pos} runs ahead of the stream")
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError, ... on any malformed stream
        raise DataFormatError(f"{where}: not a readable .bin pickle: {exc}") from None


def _unpickle(data: bytes, where: str) -> Any:
    """Unpickle with the default encoding, falling back to ``'bytes'`` for Python 2 files."""
    _check_opcodes(data, where)
    try:
        return SafeBinUnpickler(io.BytesIO(data), where).load()
    except UnicodeDecodeError:
        pass  # py2 `str` holding binary image data
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a restricted load = bad file
        raise DataFormatError(f"{where}: not a readable .bin pickle: {exc!r}") from None
    try:
        return SafeBinUnpickler(io.BytesIO(data), where, encoding="bytes").load()
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataFormatError(f"{where}: not a readable .bin pickle: {exc!r}") from None


def _as_bytes(item: Any, index: int, where: str) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, str):
        # A Python 2 `str` read with an ASCII-compatible encoding: map chars back to bytes.
        try:
            return item.encode("latin1")
        except UnicodeEncodeError:
            pass
    elif isinstance(item, np.ndarray) and item.dtype in (np.uint8, np.int8) and item.ndim == 1:
        return item.tobytes()
    desc = f"{type(item).__name__}"
    if isinstance(item, np.ndarray):
        desc = f"ndarray {item.dtype} {item.shape}"
    raise DataFormatError(f"{where}: image {index} is a {desc}, expected encoded image bytes")


def load_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Load a verification ``.bin`` safely.

    Args:
        path: The ``.bin`` file.

    Returns:
        ``(bins, issame)``: 2N encoded images as bytes and an N-element bool array.

    Raises:
        DataFormatError: The file holds anything other than images and booleans, or its
            structure is wrong (not a pair, odd image count, count != 2 x pairs).
    """
    where = str(path)
    data = Path(path).read_bytes()
    obj = _unpickle(data, where)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(
            f"{where}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}"
        )
    raw_bins, raw_issame = obj
    if not isinstance(raw_bins, (list, tuple)):
        raise DataFormatError(f"{where}: bins is a {type(raw_bins).__name__}, expected a list")
    if isinstance(raw_issame, np.ndarray):
        raw_issame = raw_issame.reshape(-1).tolist()
    if not isinstance(raw_issame, (list, tuple)):
        raise DataFormatError(f"{where}: issame_list is a {type(raw_issame).__name__}, expected a list")
    if len(raw_bins) % 2:
        raise DataFormatError(f"{where}: odd number of images ({len(raw_bins)}); pairs need an even count")
    if len(raw_bins) != 2 * len(raw_issame):
        raise DataFormatError(
            f"{where}: {len(raw_bins)} images but {len(raw_issame)} pairs in issame_list "
            f"(expected {2 * len(raw_issame)} images)"
        )
    bins = [_as_bytes(b, i, where) for i, b in enumerate(raw_bins)]
    issame = np.empty(len(raw_issame), dtype=bool)
    for i, v in enumerate(raw_issame):
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
            issame[i] = bool(v)
        else:
            raise DataFormatError(f"{where}: issame_list[{i}] is {v!r}, expected a bool")
    return bins, issame


def write_bin(
    path: str | Path,
    images: Sequence[bytes | np.ndarray],
    issame: Sequence[bool],
    img_fmt: str = ".jpg",
    quality: int = 95,
) -> None:
    """Write a verification ``.bin`` (pickle protocol 4 of ``(bins, issame_list)``).

    Args:
        path: Output file (written atomically).
        images: 2N items: encoded image bytes, 1-D uint8 arrays of encoded bytes, or RGB
            uint8 ``[H, W, 3]`` arrays, which are encoded with ``img_fmt``.
        issame: N booleans; pair i is ``(images[2i], images[2i + 1])``.
        img_fmt: ``'.jpg'`` or ``'.png'`` for arrays that need encoding.
        quality: JPEG quality.
    """
    if len(images) != 2 * len(issame):
        raise ValueError(f"need 2 x {len(issame)} images for {len(issame)} pairs, got {len(images)}")
    bins: list[bytes] = []
    for img in images:
        if isinstance(img, (bytes, bytearray)):
            bins.append(bytes(img))
        elif isinstance(img, np.ndarray) and img.ndim == 1:
            bins.append(img.astype(np.uint8, copy=False).tobytes())
        else:
            bins.append(encode_image(np.asarray(img), quality=quality, img_fmt=img_fmt))
    payload = pickle.dumps((bins, [bool(s) for s in issame]), protocol=4)
    atomic_write(path, lambda f: f.write(payload))


def decode_pairs(bins: Sequence[bytes | np.ndarray], where: str) -> np.ndarray:
    """Decode all images of a ``.bin`` to one RGB uint8 array ``[2N, H, W, 3]``.

    Raises:
        DataFormatError: An image is corrupt or has a different size from image 0
            (the message names ``where`` and the image index).
    """
    if len(bins) == 0:
        return np.empty((0, 0, 0, 3), dtype=np.uint8)
    out: np.ndarray | None = None
    for i, buf in enumerate(bins):
        img = decode_image(buf, f"{where}: image {i}")
        if out is None:
            out = np.empty((len(bins), *img.shape), dtype=np.uint8)
        elif img.shape != out.shape[1:]:
            raise DataFormatError(
                f"{where}: image {i} is {img.shape[0]}x{img.shape[1]}, image 0 is "
                f"{out.shape[1]}x{out.shape[2]}"
            )
        out[i] = img
    assert out is not None
    return out
