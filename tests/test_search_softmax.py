"""Search-Softmax: float64 reference of the loss family, its special cases, the policy step, the callback.

The references below are written from the paper's formulas (p -> h(p)·p, h(p) = 1/(A·p + 1 − A))
and never call the head's code.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from fr_lightning.backbones import iresnet18
from fr_lightning.callbacks import GaussianPolicy, LossSearch
from fr_lightning.callbacks.loss_search import normalized_rewards
from fr_lightning.data import SyntheticPairs
from fr_lightning.heads import CosFace, NormFace, SearchSoftmax
from fr_lightning.heads.search_softmax import modulation_shift, probability_bins
from fr_lightning.methods import CoTeaching, LowRes
from fr_lightning.module import FaceRecognitionModule
from tests.helpers import tiny_data, tiny_trainer


def paper_loss(cos: torch.Tensor, labels: torch.Tensor, s: float, a: list[float], kappa: float) -> torch.Tensor:
    """Per-sample ``−log(h(p)·p)``, ``p = softmax(s·c)_y``, ``A = a_j·e^{s·κ}``, ``j``: p in ((j)/M, (j+1)/M]."""
    bins = len(a)
    out = []
    for i in range(cos.shape[0]):
        c = cos[i].clamp(-1 + 1e-6, 1 - 1e-6)
        p = torch.softmax(s * c, dim=0)[int(labels[i])]
        j = next(k for k in range(bins) if k == bins - 1 or float(p.detach()) <= (k + 1) / bins)
        big_a = a[j] * math.exp(s * kappa)
        out.append(-torch.log(p / (big_a * p + 1 - big_a)))
    return torch.stack(out)


def spread_inputs(s: float, n: int = 40, classes: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 cosines whose target probabilities spread over (0, 1) at scale ``s``."""
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(n, classes, generator=g, dtype=torch.float64) * 0.6 - 0.3
    labels = torch.randint(0, classes, (n,), generator=g)
    cos[torch.arange(n), labels] = torch.linspace(-0.4, 0.9, n, dtype=torch.float64)
    return cos.requires_grad_(), labels


@pytest.mark.parametrize(
    ("s", "a", "exponent"),
    [(32.0, [-1.0], None), (32.0, [-0.2], None), (8.0, [-1.0, -0.5, 0.0, -0.05, -2.0, -0.3, -0.01, -1.5, -0.7, 0.0], None), (6.0, [-0.4, -3.0, 0.0], 0.25)],
)
def test_loss_and_gradient_match_the_paper_formula(s: float, a: list[float], exponent: float | None) -> None:
    head = SearchSoftmax(s=s, a=a, bins=len(a), exponent=exponent)
    kappa = exponent if exponent is not None else (1 / 3 if len(a) == 1 else 1 / 2)
    cos, labels = spread_inputs(s)
    got = F.cross_entropy(head(cos, labels), labels, reduction="none")
    want = paper_loss(cos, labels, s, a, kappa)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    proj = torch.rand(len(labels), dtype=torch.float64)
    (g_got,) = torch.autograd.grad((got * proj).sum(), cos)
    (g_want,) = torch.autograd.grad((want * proj).sum(), cos)
    # The literal formula cancels digits (A·p + 1 − A with |A| ~ 4e4): gradients agree to ~1e-10 of s.
    torch.testing.assert_close(g_got, g_want, rtol=1e-6, atol=1e-8)
    if len(a) == 10:  # the inputs exercise several intervals, not one
        with torch.no_grad():
            p = torch.softmax(s * cos, 1)[torch.arange(len(labels)), labels]
        assert len(set(probability_bins(p, 10).tolist())) >= 6


def test_zero_a_is_normface_and_h_never_raises_p() -> None:
    cos, labels = spread_inputs(32.0)
    torch.testing.assert_close(SearchSoftmax(s=32.0, a=[0.0])(cos, labels), NormFace(s=32.0)(cos, labels), rtol=0, atol=0)
    losses = [F.cross_entropy(SearchSoftmax(s=32.0, a=[a])(cos, labels), labels, reduction="none") for a in (0.0, -0.01, -0.3, -2.0)]
    for weaker, stronger in zip(losses, losses[1:]):
        assert (stronger > weaker).all()  # h(p) <= 1, decreasing in |a|: a larger reduction of p


@pytest.mark.parametrize(("s", "a"), [(32.0, -1.0), (32.0, -0.05), (64.0, -0.3)])
def test_one_interval_is_cosface_with_the_equivalent_margin(s: float, a: float) -> None:
    """Constant A: p·/(A·p + 1 − A) is AM-Softmax / CosFace with m = ln(1 − A)/s (the unified view)."""
    m = math.log(1 - a * math.exp(s / 3)) / s
    cos, labels = spread_inputs(s)
    torch.testing.assert_close(SearchSoftmax(s=s, a=[a])(cos, labels), CosFace(s=s, m=m)(cos, labels), rtol=1e-12, atol=1e-10)
    if (s, a) == (32.0, -1.0):  # the authors' starting point: close to CosFace m = 1/3
        assert m == pytest.approx(1 / 3, abs=1e-4)


def test_interval_rule_and_no_overflow() -> None:
    p = torch.tensor([0.0, 0.1, 0.1000001, 0.35, 0.9, 0.9000001, 1.0], dtype=torch.float64)
    assert probability_bins(p, 10).tolist() == [0, 0, 1, 3, 8, 9, 9]  # first j with p <= (j+1)/10, as lfs_core
    assert probability_bins(p, 1).tolist() == [0] * 7
    shift = modulation_shift(torch.tensor([-2.0, 0.0, -1e-30]), 64.0, 0.5)
    assert shift[0].item() == pytest.approx(math.log(1 + 2 * math.exp(32.0)), rel=1e-6)
    assert shift[1].item() == 0.0 and torch.isfinite(shift).all()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"init_args\.a.*<= 0"):
        SearchSoftmax(a=[0.5])
    with pytest.raises(ValueError, match="bins=3"):
        SearchSoftmax(a=[-1.0, -0.5], bins=3)
    head = SearchSoftmax(bins=2)
    assert head.a_current.tolist() == [-1.0, -1.0]  # one value serves every interval
    with pytest.raises(ValueError, match="set_a"):
        head.set_a([-0.1])
    with pytest.raises(ValueError, match="candidates"):
        LossSearch(candidates=1)


# ----------------------------------------------------------------------------- policy


def test_normalized_rewards_are_the_authors() -> None:
    r = normalized_rewards(torch.tensor([0.6, 0.5, 0.55], dtype=torch.float64))
    span = 0.1 + 1e-6
    torch.testing.assert_close(r, torch.tensor([0.1 / span, -0.1 / span, 0.0], dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_policy_step_by_hand() -> None:
    policy = GaussianPolicy(dims=2, mean=0.0, sigma=0.2, lr=0.05)
    policy.mu = torch.tensor([0.0, 0.1], dtype=torch.float64)
    x = torch.tensor([[0.1, -0.2], [-0.3, 0.4]], dtype=torch.float64)
    r = torch.tensor([1.0, -1.0], dtype=torch.float64)
    # −Σ_b R_b (x_b − μ)/σ²: dim 0: −(0.1 − (−0.3))/0.04 = −10; dim 1: −((−0.3) − 0.3)/0.04 = 15.
    g = policy.update(x, r)
    torch.testing.assert_close(g, torch.tensor([-10.0, 15.0], dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # Adam's first step is lr·g/(|g| + ε): μ moves by 0.05 against the gradient's sign.
    want = torch.tensor([0.0 + 0.05 * 10 / (10 + 1e-8), 0.1 - 0.05 * 15 / (15 + 1e-8)], dtype=torch.float64)
    torch.testing.assert_close(policy.mu, want, rtol=0, atol=1e-15)
    # Second step: m = 0.5·m1 + 0.5·g2, v = 0.999·v1 + 0.001·g2², bias-corrected.
    g2 = policy.gradient(x, r)
    m = 0.5 * (0.5 * g) + 0.5 * g2
    v = 0.999 * (0.001 * g * g) + 0.001 * g2 * g2
    expect = want - 0.05 * (m / (1 - 0.25)) / ((v / (1 - 0.999**2)).sqrt() + 1e-8)
    policy.update(x, r)
    torch.testing.assert_close(policy.mu, expect, rtol=0, atol=1e-14)


def test_policy_matches_autograd_reinforce_and_torch_adam() -> None:
    """Independent route: −Σ R·log N(x; μ, σ) through torch.distributions and torch.optim.Adam."""
    gen = torch.Generator().manual_seed(3)
    policy = GaussianPolicy(dims=3, mean=0.1, sigma=0.2, lr=0.05)
    mu = torch.nn.Parameter(torch.full((3,), 0.1, dtype=torch.float64))
    adam = torch.optim.Adam([mu], lr=0.05, betas=(0.5, 0.999), eps=1e-8)
    for _ in range(4):
        xs = torch.stack([policy.sample(gen)[0] for _ in range(4)])
        r = normalized_rewards(torch.rand(4, generator=gen, dtype=torch.float64))
        adam.zero_grad()
        loss = -(r.unsqueeze(1) * torch.distributions.Normal(mu, 0.2).log_prob(xs)).sum()
        loss.backward()
        torch.testing.assert_close(policy.gradient(xs, r), mu.grad, rtol=1e-12, atol=1e-12)
        adam.step()
        policy.update(xs, r)
        torch.testing.assert_close(policy.mu, mu.detach(), rtol=1e-12, atol=1e-14)
    x, a = policy.sample(gen)
    assert torch.equal(a, -x.abs()) and (a <= 0).all()


def test_callback_state_round_trip() -> None:
    cb = LossSearch(candidates=3)
    cb.policy = GaussianPolicy(2)
    cb.policy.update(torch.tensor([[0.1, -0.2], [0.3, 0.0]], dtype=torch.float64), torch.tensor([1.0, -1.0]))
    cb.generator.manual_seed(11)
    cb.policy.sample(cb.generator)
    cb.plan, cb.done, cb.last_acc = {"warmup": 4, "steps": 2, "total": 6}, 3, 0.61
    cb.round_x, cb.round_r, cb.current_x = [[0.1, -0.3]], [0.02], [0.2, 0.05]
    cb.history = [{"step": 6, "a": [-0.1, -0.3], "acc": 0.61, "reward": 0.02}]
    buf = io.BytesIO()
    torch.save(cb.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    new = LossSearch(candidates=3)
    new.load_state_dict(state)
    new.policy = GaussianPolicy(2)
    new._restore(new._loaded)  # what on_train_start does once it knows the head
    for key in ("plan", "done", "last_acc", "round_x", "round_r", "current_x", "history"):
        assert getattr(new, key) == getattr(cb, key), key
    for key, value in cb.policy.state_dict().items():
        assert torch.equal(torch.as_tensor(new.policy.state_dict()[key]), torch.as_tensor(value)), key
    assert torch.equal(new.policy.sample(new.generator)[0], cb.policy.sample(cb.generator)[0])
    with pytest.raises(ValueError, match="search parameters"):
        GaussianPolicy(3).load_state_dict(cb.policy.state_dict())


# ----------------------------------------------------------------------------- training


def _module(bins: int = 1) -> FaceRecognitionModule:
    backbone = iresnet18(width=0.125, input_size=56, embedding_dim=32)
    return FaceRecognitionModule(backbone=backbone, head=SearchSoftmax(s=16.0, bins=bins), num_classes=8)


def _search() -> LossSearch:
    # 8 identities x 4 / batch 4 = 8 steps per epoch: no warm-up, one step per candidate; a
    # 20-pair reward set of its own (the fewest SyntheticPairs allows) keeps each reward small.
    reward = SyntheticPairs("synth-reward", pairs=20, set_seed=9)
    return LossSearch(candidates=2, warmup_epochs=0.0, candidate_epochs=0.125, reward_set=reward, seed=5)


class StopAt(pl.Callback):
    """Stops training after optimizer step ``step`` (the run keeps its full schedule, as a killed run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


@pytest.mark.slow  # 4 steps and 5 rewards: 107 s measured on the 2-core machine at load 20 (nice 10); seconds when quiet
def test_search_runs_rounds_updates_the_policy_and_logs(tmp_path: Path) -> None:
    search = _search()
    module = _module(bins=2)
    trainer = tiny_trainer(tmp_path, callbacks=[search], max_steps=4, limit_val_batches=0)
    trainer.fit(module, tiny_data(batch_size=4))
    assert search.plan == {"warmup": 0, "steps": 1, "total": 4}
    assert [h["step"] for h in search.history] == [1, 2, 3, 4]
    assert search.policy is not None and search.policy.steps == 2 and not torch.equal(search.policy.mu, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(module.head.a_current, search.policy.mode())  # after the last round: −|μ|
    metrics = trainer.callback_metrics
    for key in ("search/mu/0", "search/mu/1", "search/sigma", "search/candidate/reward", "search/candidate/a/1"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert all(0.0 <= h["acc"] <= 1.0 and all(v <= 0 for v in h["a"]) for h in search.history)


@pytest.mark.slow  # three short trainings with a reward every step: about a minute on a quiet 2-core CPU
def test_exact_resume_mid_round(tmp_path: Path) -> None:
    """Stop after step 3 (inside the second round), resume: same weights, head a and policy as straight through."""

    def run(root: Path, stop: int | None = None, ckpt: str | None = None) -> tuple[FaceRecognitionModule, LossSearch]:
        torch.manual_seed(0)
        search = _search()
        module = _module()
        saver = ModelCheckpoint(dirpath=root, every_n_train_steps=1, save_top_k=-1, filename="{step}")
        extra = [] if stop is None else [StopAt(stop)]
        trainer = tiny_trainer(root, callbacks=[search, saver, *extra], max_steps=5, limit_val_batches=0, enable_checkpointing=True)
        pl.seed_everything(1)
        trainer.fit(module, tiny_data(batch_size=4), ckpt_path=ckpt)
        return module, search

    straight, s_search = run(tmp_path / "a")
    run(tmp_path / "b", stop=3)
    resumed, r_search = run(tmp_path / "c", ckpt=str(tmp_path / "b" / "step=3.ckpt"))
    assert len(s_search.history) == 4
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert torch.equal(r_search.policy.mu, s_search.policy.mu) and r_search.history == s_search.history


@pytest.mark.slow  # 81 s on the 2-core machine at load 20; the default suite stays under 5 minutes
def test_stacks_with_lowres_and_coteaching(tmp_path: Path) -> None:
    """The head swap composes with the methods: two steps train and the search runs a round.

    (tests/test_compose.py's matrix stacks methods on the ArcFace head; a head acts only on the
    cosines, so stacking both methods on this head covers its pairs with them.)
    """
    methods = [LowRes(), CoTeaching(forget_rate=0.25, ramp=0)]
    search = _search()
    trainer = tiny_trainer(tmp_path, callbacks=[*methods, search], max_steps=2, limit_val_batches=0)
    trainer.fit(_module(), tiny_data(batch_size=4))
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert search.policy is not None and search.policy.steps == 1 and len(search.history) == 2
    for method in methods:
        assert any(k.startswith(f"train/loss/{method.name}/") for k in trainer.callback_metrics)


def test_fragment_swaps_the_head_and_appends_the_search() -> None:
    """`--config recipes/arcface.yaml --config configs/heads/search-softmax.yaml`: head and callback together."""
    from fr_lightning.cli import cli_main

    root = Path(__file__).resolve().parents[1]
    args = ["--config", str(root / "recipes" / "arcface.yaml"), "--config", str(root / "configs" / "heads" / "search-softmax.yaml")]
    cli = cli_main([*args, "--config", str(root / "configs" / "methods" / "lowres.yaml"), "--trainer.logger=false"], run=False)
    assert type(cli.model.head) is SearchSoftmax and cli.model.head.a == [-1.0]
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert "LossSearch" in names and "LowRes" in names  # the method fragment's callback is appended, not replacing
    search = next(c for c in cli.trainer.callbacks if isinstance(c, LossSearch))
    assert (search.candidates, search.warmup_epochs, search.candidate_epochs, search.lr, search.sigma) == (4, 2.0, 1.0, 0.05, 0.2)
