"""Counter-based random numbers: a sample's draws depend only on its hashed keys."""

from __future__ import annotations

import numpy as np


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic is intended)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _key(*parts: np.ndarray | int) -> np.ndarray:
    """Hash integer arrays/scalars (broadcast together) into one uint64 key per element."""
    arrays = np.broadcast_arrays(*[np.asarray(p, dtype=np.int64) for p in parts])
    k = np.full(arrays[0].shape, 0x243F6A8885A308D3, dtype=np.uint64)
    for a in arrays:
        k = _mix(k ^ _mix(a.astype(np.uint64) + _GOLDEN))
    return k


class _Draws:
    """Hands out columns of hash-derived uniforms, one row per sample, in a fixed order."""

    def __init__(self, keys: np.ndarray, columns: int) -> None:
        """Args: keys: uint64 [N] sample keys. columns: how many uniforms to make per sample."""
        counters = np.arange(1, columns + 1, dtype=np.uint64) * _GOLDEN
        bits = _mix(keys[:, None] + counters[None, :]) >> _S11
        self._u = (bits.astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)  # (0, 1)
        self._next = 0

    def u(self, count: int = 0) -> np.ndarray:
        """Uniforms in (0, 1): shape [N] if count == 0 else [N, count]."""
        k = max(count, 1)
        if self._next + k > self._u.shape[1]:
            raise RuntimeError("_Draws ran out of columns; raise its column count")
        out = self._u[:, self._next : self._next + k]
        self._next += k
        return out[:, 0] if count == 0 else out

    def n(self, count: int = 0) -> np.ndarray:
        """Standard normals (Box-Muller, two uniforms each), shape like :meth:`u`."""
        k = max(count, 1)
        u1, u2 = self.u(k), self.u(k)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return z[:, 0] if count == 0 else z

    def cat(self, cum_probs: np.ndarray) -> np.ndarray:
        """Categorical draw from per-row cumulative probabilities [N, C]."""
        u = self.u()
        return np.minimum((u[:, None] > cum_probs).sum(axis=1), cum_probs.shape[1] - 1)
