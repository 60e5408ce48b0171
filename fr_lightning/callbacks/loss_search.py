"""LossSearch: Search-Softmax's reward-guided search of the head's modulation parameters ``a``.

The policy is a Gaussian over the search parameters, updated by REINFORCE with a verification
reward (Wang et al., ICML 2020; the authors' ``lfs_core``: ``LFSAgent``, ``LossFuncSearch``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from fr_lightning.data import PairImages, PairSet, ValSource
from fr_lightning.eval import evaluate_pairs
from fr_lightning.heads.search_softmax import SearchSoftmax


def normalized_rewards(rewards: Tensor) -> Tensor:
    """The authors' reward shaping: ``2·(r − mean r)/(max r − min r + 1e-6)`` over one round."""
    r = rewards.to(torch.float64)
    return 2.0 * (r - r.mean()) / (r.max() - r.min() + 1e-6)


class GaussianPolicy:
    """Independent Gaussians ``x_i ~ N(μ_i, σ²)`` over the search parameters, action ``a = −|x|``.

    ``μ`` is updated by REINFORCE, ``∇_μ = −Σ_b R_b·(x_b − μ)/σ²`` (the gradient of
    ``−Σ_b R_b·log N(x_b; μ, σ²)``), through Adam (β = (0.5, 0.999), ε = 1e-8, no weight decay)
    as the authors' ``LFSAgent``; written out in float64 so a step can be checked by hand.

    Args:
        dims: number of search parameters (the head's probability intervals).
        mean: initial μ (the authors' 0).
        sigma: σ, fixed (the authors' 0.2).
        lr: Adam learning rate (the authors' 0.05).
    """

    betas = (0.5, 0.999)
    eps = 1e-8

    def __init__(self, dims: int, mean: float = 0.0, sigma: float = 0.2, lr: float = 0.05) -> None:
        if dims < 1 or sigma <= 0 or lr <= 0:
            raise ValueError(f"GaussianPolicy: need dims >= 1, sigma > 0 and lr > 0, got {dims}, {sigma}, {lr}")
        self.sigma, self.lr = float(sigma), float(lr)
        self.mu = torch.full((dims,), float(mean), dtype=torch.float64)
        self.exp_avg = torch.zeros(dims, dtype=torch.float64)
        self.exp_avg_sq = torch.zeros(dims, dtype=torch.float64)
        self.steps = 0

    def sample(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One draw ``x`` (float64 ``[dims]``) and its action ``a = −|x|``."""
        x = self.mu + self.sigma * torch.randn(self.mu.shape, generator=generator, dtype=torch.float64)
        return x, -x.abs()

    def mode(self) -> Tensor:
        """The action of the mean draw, ``−|μ|``."""
        return -self.mu.abs()

    def gradient(self, samples: Tensor, rewards: Tensor) -> Tensor:
        """REINFORCE gradient of ``−Σ_b R_b·log N(x_b; μ, σ²)`` w.r.t. μ (``samples [B, dims]``, ``rewards [B]``)."""
        x = samples.to(torch.float64)
        r = rewards.to(torch.float64).unsqueeze(1)
        return -(r * (x - self.mu) / self.sigma**2).sum(0)

    def update(self, samples: Tensor, rewards: Tensor) -> Tensor:
        """One Adam step on μ with the REINFORCE gradient; returns the gradient."""
        g = self.gradient(samples, rewards)
        b1, b2 = self.betas
        self.steps += 1
        self.exp_avg = b1 * self.exp_avg + (1 - b1) * g
        self.exp_avg_sq = b2 * self.exp_avg_sq + (1 - b2) * g * g
        m_hat = self.exp_avg / (1 - b1**self.steps)
        v_hat = self.exp_avg_sq / (1 - b2**self.steps)
        self.mu = self.mu - self.lr * m_hat / (v_hat.sqrt() + self.eps)
        return g

    def state_dict(self) -> dict[str, Any]:
        return {"mu": self.mu.clone(), "exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["mu"].shape != self.mu.shape:
            raise ValueError(f"LossSearch checkpoint has {state['mu'].numel()} search parameters, the head has {self.mu.numel()}")
        self.mu = state["mu"].to(torch.float64).clone()
        self.exp_avg = state["exp_avg"].to(torch.float64).clone()
        self.exp_avg_sq = state["exp_avg_sq"].to(torch.float64).clone()
        self.steps = int(state["steps"])


class LossSearch(pl.Callback):
    """Search-Softmax's search, run beside a :class:`~fr_lightning.heads.SearchSoftmax` head.

    Schedule, in optimizer steps (``E`` = steps per epoch): the head's own ``a`` for the first
    ``W = warmup_epochs·E`` steps; then candidates take turns, each ``c = candidate_epochs·E``
    steps: ``a = −|x|``, ``x ~ N(μ, σ²)``. At each candidate's end the reward set's verification
    accuracy is measured; the candidate's reward is its gain over the accuracy at its start.
    After every ``candidates`` rewards, μ takes one REINFORCE/Adam step with the rewards
    normalised over the round. Only whole rounds run; the steps left after the last round use
    ``a = −|μ|``. The authors train their candidates side by side, one per process, from the
    same weights, and copy the best model to all; here they take turns on the one model
    (docs/methods.md, "Search-Softmax"). The policy, the candidate sampler's generator and the
    round in progress are checkpointed, so a resumed run continues exactly.

    Logged (every logger, W&B included): ``search/mu/<i>``, ``search/sigma``, and per candidate
    ``search/candidate/a/<i>``, ``search/candidate/acc``, ``search/candidate/reward``.

    Args:
        candidates: candidates per policy update (the authors run one per process).
        warmup_epochs: epochs trained with the head's configured ``a`` first (the authors' 2).
        candidate_epochs: epochs each candidate trains before its reward (the authors' 1).
        lr: Adam learning rate of μ (the authors' 0.05).
        sigma: σ of the policy (the authors' 0.2).
        mean: initial μ (the authors' 0).
        reward_set: verification set measured for the reward; None: one of the data module's
            validation sets (``reward_from``). Report accuracy on other sets than this one.
        reward_from: name of the data module's validation set used when ``reward_set`` is None
            (None: the first).
        seed: seed of the candidate sampler; None: the run's seed (``PL_GLOBAL_SEED``, else 0).
    """

    def __init__(
        self,
        candidates: int = 4,
        warmup_epochs: float = 2.0,
        candidate_epochs: float = 1.0,
        lr: float = 0.05,
        sigma: float = 0.2,
        mean: float = 0.0,
        reward_set: ValSource | None = None,
        reward_from: str | None = None,
        seed: int | None = None,
    ) -> None:
        if candidates < 2:
            raise ValueError(f"LossSearch: candidates must be >= 2 (rewards are normalised over a round), got {candidates}")
        if warmup_epochs < 0 or candidate_epochs <= 0:
            raise ValueError("LossSearch: warmup_epochs must be >= 0 and candidate_epochs > 0")
        if sigma <= 0 or lr <= 0:
            raise ValueError("LossSearch: sigma and lr must be > 0")
        self.candidates = candidates
        self.warmup_epochs, self.candidate_epochs = warmup_epochs, candidate_epochs
        self.lr, self.sigma, self.mean = lr, sigma, mean
        self.reward_set, self.reward_from, self.seed = reward_set, reward_from, seed
        self.policy: GaussianPolicy | None = None
        self.generator = torch.Generator()
        self.plan: dict[str, int] | None = None  # warmup W, candidate steps c, total candidates R·B
        self.done = 0  # boundaries handled (boundary k is at step W + k·c)
        self.last_acc: float | None = None
        self.round_x: list[list[float]] = []
        self.round_r: list[float] = []
        self.current_x: list[float] | None = None
        self.history: list[dict[str, Any]] = []
        self._loaded: dict[str, Any] | None = None
        self._pairs: PairSet | None = None
        self._head: SearchSoftmax | None = None

    # ------------------------------------------------------------------ setup
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the head, build the reward set, plan the schedule (or take the checkpoint's)."""
        heads = [m for m in pl_module.modules() if isinstance(m, SearchSoftmax)]
        if len(heads) != 1:
            raise ValueError(
                f"LossSearch needs exactly one fr_lightning.heads.SearchSoftmax in the model "
                f"(model.init_args.head), found {len(heads)}"
            )
        self._head = heads[0]
        self._pairs = self._reward_pairs(trainer)
        self.policy = GaussianPolicy(self._head.bins, self.mean, self.sigma, self.lr)
        if self._loaded is not None:
            self._restore(self._loaded)
            self._loaded = None
            return
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        self.generator.manual_seed(seed)
        self.plan = self._make_plan(trainer)
        if self.plan["total"] == 0:
            rank_zero_warn(
                f"LossSearch: the run is too short for one round of {self.candidates} candidates "
                f"(warm-up {self.plan['warmup']} + {self.candidates} x {self.plan['steps']} steps); no search runs"
            )

    def _make_plan(self, trainer: pl.Trainer) -> dict[str, int]:
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError("LossSearch schedules in epochs and needs a training loader with a length")
        per_epoch = max(1, math.ceil(int(batches) / trainer.accumulate_grad_batches))
        total_steps = int(trainer.estimated_stepping_batches)
        warmup = int(round(self.warmup_epochs * per_epoch))
        steps = max(1, int(round(self.candidate_epochs * per_epoch)))
        rounds = max(0, total_steps - warmup) // (steps * self.candidates)
        return {"warmup": warmup, "steps": steps, "total": rounds * self.candidates}

    def _reward_pairs(self, trainer: pl.Trainer) -> PairSet:
        dm = getattr(trainer, "datamodule", None)
        if self.reward_set is not None:
            return self.reward_set.build(int(getattr(dm, "image_size", 112)))
        sets: list[PairSet] = list(getattr(dm, "val_pairs", []) or [])
        if self.reward_from is not None:
            sets = [p for p in sets if p.name == self.reward_from]
        if not sets:
            wanted = f"a validation set named {self.reward_from!r}" if self.reward_from else "a validation set"
            raise ValueError(
                f"LossSearch: no reward set: give trainer.callbacks[LossSearch].init_args.reward_set "
                f"or {wanted} in data.init_args.val_sets"
            )
        return sets[0]

    # -------------------------------------------------------------- schedule
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        """Handle every schedule boundary reached by this optimizer step (before its forward)."""
        self._advance(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A round ending on the last step is rewarded and applied here."""
        self._advance(trainer, pl_module)

    def _boundary(self, k: int) -> int:
        assert self.plan is not None
        return self.plan["warmup"] + k * self.plan["steps"]

    def _advance(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.plan is None or self.plan["total"] == 0:
            return
        while self.done <= self.plan["total"] and trainer.global_step >= self._boundary(self.done):
            self._event(trainer, pl_module)
            self.done += 1

    def _event(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Boundary ``done``: reward the candidate that just ended, update at a round's end, start the next."""
        assert self.policy is not None and self._head is not None and self.plan is not None
        acc = self.reward(trainer, pl_module)
        step = trainer.global_step
        if self.done > 0 and self.current_x is not None and self.last_acc is not None:
            gain = acc - self.last_acc
            self.round_x.append(self.current_x)
            self.round_r.append(gain)
            a = [-abs(v) for v in self.current_x]
            self.history.append({"step": step, "a": a, "acc": acc, "reward": gain})
            metrics = {f"search/candidate/a/{i}": v for i, v in enumerate(a)}
            metrics.update({"search/candidate/acc": acc, "search/candidate/reward": gain})
            self._log(trainer, metrics, step)
            if len(self.round_r) == self.candidates:
                samples = torch.tensor(self.round_x, dtype=torch.float64)
                self.policy.update(samples, normalized_rewards(torch.tensor(self.round_r, dtype=torch.float64)))
                self.round_x, self.round_r = [], []
        self.last_acc = acc
        if self.done < self.plan["total"]:
            x, a = self.policy.sample(self.generator)
            self.current_x = x.tolist()
            self._head.set_a(a)
        else:
            self.current_x = None
            self._head.set_a(self.policy.mode())
        self._log(trainer, self.policy_metrics(), step)

    def policy_metrics(self) -> dict[str, float]:
        """``search/mu/<i>`` and ``search/sigma``."""
        assert self.policy is not None
        out = {f"search/mu/{i}": float(v) for i, v in enumerate(self.policy.mu)}
        out["search/sigma"] = self.policy.sigma
        return out

    def _log(self, trainer: pl.Trainer, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    # ---------------------------------------------------------------- reward
    @torch.no_grad()
    def reward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        """Verification accuracy (10-fold protocol) of the reward set, flip-summed embeddings.

        Every rank computes it on the whole set; rank 0's value is used by all.
        """
        assert self._pairs is not None
        pairs = self._pairs
        modes = {m: m.training for m in pl_module.modules()}
        pl_module.eval()
        dataset = PairImages(pairs)
        size = int(getattr(getattr(trainer, "datamodule", None), "val_batch_size", 256))
        chunks = []
        try:
            with trainer.precision_plugin.forward_context():
                for start in range(0, len(dataset), size):
                    items = dataset.__getitems__(list(range(start, min(start + size, len(dataset)))))
                    images = torch.stack([it["images"] for it in items]).to(pl_module.device)
                    chunks.append(pl_module.embed(images).float().cpu())
        finally:
            for module, mode in modes.items():
                module.train(mode)
        acc = float(evaluate_pairs(torch.cat(chunks), np.asarray(pairs.issame))["acc"])
        return float(trainer.strategy.broadcast(acc, src=0))

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Policy (μ, Adam moments), sampler generator, schedule position and the round in progress."""
        return {
            "policy": None if self.policy is None else self.policy.state_dict(),
            "generator": self.generator.get_state(),
            "plan": self.plan,
            "done": self.done,
            "last_acc": self.last_acc,
            "round_x": [list(x) for x in self.round_x],
            "round_r": list(self.round_r),
            "current_x": self.current_x,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the state until ``on_train_start`` knows the head (applied there)."""
        self._loaded = dict(state_dict)
        if self.policy is not None:  # already set up (state loaded into a running search)
            self._restore(self._loaded)
            self._loaded = None

    def _restore(self, state: dict[str, Any]) -> None:
        assert self.policy is not None
        if state.get("policy") is not None:
            self.policy.load_state_dict(state["policy"])
        self.generator.set_state(state["generator"])
        self.plan = state["plan"]
        self.done = int(state["done"])
        self.last_acc = state["last_acc"]
        self.round_x = [list(x) for x in state["round_x"]]
        self.round_r = list(state["round_r"])
        self.current_x = state["current_x"]
        self.history = [dict(h) for h in state["history"]]
