"""Host-side bookkeeping of F²C's Dynamic Class Pool: the LRU identity -> slot map and write phases.

The pool itself (the ``[2, Q, D]`` feature queue) is a tensor buffer of :class:`~fr_lightning.classifiers.F2C`;
this module decides, for a sequence of gallery labels, which slot and which of the two queue rows
each feature is written to, following the rules of the authors' code (tiandunx/FFC, ``ffc_ddp.py``
and its LRU module) [exact]:

* identities are kept in least-recently-used order; a label already in the pool is a *hit*: it
  becomes the most recent, its slot is kept, its feature goes to row ``phase[slot]``, the phase
  flips (0 <-> 1) and the slot is marked *updated* for this pass;
* a new label takes the next never-used slot while the pool is not full, else the slot of the
  least recently used identity (evicting it); its feature goes to row 0 and the phase becomes 1;
* a pass can be *planned* without being committed: the authors' first (probe x, gallery y) pass
  writes the pool, scores, then rolls the LRU, the phases and the queue back; here that pass is
  simply planned and never committed, which leaves the same state behind.

Unlike the authors' linked-list LRU with an undo stack, a :class:`PoolPlan` overlays the few
identities a pass touches on the committed order, so planning costs O(labels) and a commit is a
replay; the resulting assignments are the same (tested against a transcription of their rules).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import Tensor


class PoolPlan:
    """Slot and queue row of each gallery label of one pass, and the pool state after it.

    Attributes:
        slots: slot of each gallery label, in order.
        rows: queue row (0 or 1) each gallery feature is written to.
        updated: slots that were hits in this pass (the second score matrix reads row 1 there).
    """

    def __init__(self, pool: "ClassPool") -> None:
        self.pool = pool
        self.touched: OrderedDict[int, int] = OrderedDict()  # key -> slot, most recent last
        self.evicted: set[int] = set()
        self.filled = pool.filled
        self.phase: dict[int, int] = {}
        self.slots: list[int] = []
        self.rows: list[int] = []
        self.updated: set[int] = set()
        self._tail: Iterator[int] = iter(pool.order)

    def _resident(self, key: int) -> int | None:
        """Slot of ``key`` if it is in the pool as planned so far, else None."""
        if key in self.touched:
            return self.touched[key]
        if key in self.evicted:
            return None
        return self.pool.order.get(key)

    def _victim(self) -> tuple[int, int]:
        """The least recently used identity (key, slot) as planned so far."""
        for key in self._tail:
            if key not in self.touched and key not in self.evicted:
                return key, self.pool.order[key]
        key, slot = next(iter(self.touched.items()))  # every committed identity was touched already
        del self.touched[key]
        return key, slot

    def add(self, key: int) -> None:
        """Plan writing one gallery feature of identity ``key``."""
        slot = self._resident(key)
        if slot is not None:  # hit: most recent, write the phase's row, flip it
            self.touched.pop(key, None)
            self.touched[key] = slot
            row = self.phase.get(slot, self.pool.phase[slot])
            self.phase[slot] = 1 - row
            self.updated.add(slot)
        else:
            if self.filled < self.pool.capacity:
                slot = self.filled
                self.filled += 1
            else:
                victim, slot = self._victim()
                self.evicted.add(victim)
            self.touched[key] = slot
            row = 0
            self.phase[slot] = 1
        self.slots.append(slot)
        self.rows.append(row)

    def view(self, key: int) -> int:
        """Slot of identity ``key`` after this pass, or -1 when it is not in the pool (a negative)."""
        slot = self._resident(key)
        return -1 if slot is None else slot


class ClassPool:
    """LRU map from identity to pool slot (``capacity`` slots) plus each slot's write phase.

    Args:
        capacity: number of slots ``Q`` of the pool.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"F2C pool capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.order: OrderedDict[int, int] = OrderedDict()  # identity -> slot, least recent first
        self.filled = 0
        self.phase = [0] * self.capacity

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, key: int) -> bool:
        return key in self.order

    def plan(self, labels: list[int]) -> PoolPlan:
        """Plan writing the gallery features of ``labels`` (in order) without changing the pool."""
        plan = PoolPlan(self)
        for key in labels:
            plan.add(int(key))
        return plan

    def commit(self, plan: PoolPlan) -> None:
        """Make ``plan``'s state the pool's (evictions, recency order, phases, used slots)."""
        if plan.pool is not self:
            raise ValueError("this plan was made for another pool")
        for key in plan.evicted:
            self.order.pop(key, None)
        for key, slot in plan.touched.items():
            self.order.pop(key, None)
            self.order[key] = slot
        for slot, value in plan.phase.items():
            self.phase[slot] = value
        self.filled = plan.filled

    def view(self, key: int) -> int:
        """Slot of identity ``key``, or -1 when it is not in the pool."""
        return self.order.get(int(key), -1)

    # ------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Tensor]:
        """The pool's state as tensors (checkpoints load it with ``weights_only=True``)."""
        return {
            "keys": torch.tensor(list(self.order.keys()), dtype=torch.long),
            "slots": torch.tensor(list(self.order.values()), dtype=torch.long),
            "phase": torch.tensor(self.phase, dtype=torch.long),
            "filled": torch.tensor(self.filled, dtype=torch.long),
        }

    def load(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state` returned (the capacity must match)."""
        phase = state["phase"].tolist()
        if len(phase) != self.capacity:
            raise ValueError(f"F2C checkpoint pool has {len(phase)} slots, this classifier has capacity {self.capacity}")
        keys, slots = state["keys"].tolist(), state["slots"].tolist()
        if len(keys) != len(slots):
            raise ValueError("F2C checkpoint pool state is inconsistent (keys and slots differ in length)")
        self.order = OrderedDict(zip(keys, slots))
        self.phase = [int(p) for p in phase]
        self.filled = int(state["filled"])
