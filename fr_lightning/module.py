"""FaceRecognitionModule: backbone + classifier + margin head + stacked method hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from fr_lightning.batch import FaceBatch
from fr_lightning.functional.reduce import combine_weights, reduce_loss
from fr_lightning.heads.base import MarginHead
from fr_lightning.methods.base import Method, check_methods
from fr_lightning.schedules import LRSchedule

#: Builds the classifier from (embedding_dim, num_classes); YAML gives it as a class_path.
ClassifierFactory = Callable[[int, int], nn.Module]
#: Builds the optimizer from parameter groups; YAML gives it as a class_path (torch.optim.SGD, ...).
OptimizerFactory = Callable[[Iterator[nn.Parameter]], Optimizer]


@dataclass
class StepOutput:
    """What one forward pass produced, handed to every method's hooks.

    Attributes:
        embeddings: raw (unnormalised) backbone output ``[B, D]``.
        cosine: classifier cosines ``[B, C']``.
        labels: labels as the classifier returned them (``-1`` = no positive in this shard).
        logits: scaled logits from the head.
        per_sample_loss: supervised loss per sample ``[B]`` before weighting.
        features: the backbone's last-stage feature map, when a method asked for it.
    """

    embeddings: Tensor
    cosine: Tensor
    labels: Tensor
    logits: Tensor
    per_sample_loss: Tensor
    features: Tensor | None = None


class FaceRecognitionModule(pl.LightningModule):
    """Trains a face-embedding backbone with a margin-based classification loss.

    Args:
        backbone: the embedding network (``forward(images) -> [B, D]``, ``embedding_dim``, ``feature_layer``).
        head: margin head turning cosines into logits (ArcFace, CosFace, ...).
        num_classes: number of identities; the CLI links it from the data module.
        classifier: class building the classifier from ``(embedding_dim, num_classes)``; default ``FullFC``.
        optimizer: optimizer class for the parameter groups; default SGD(lr=0.1, momentum=0.9, weight_decay=5e-4).
        lr_schedule: per-step schedule; default polynomial decay (power 2) without warm-up.
        no_decay_norm_and_bias: exclude 1-D parameters (BN/PReLU weights, biases) from weight decay.
        channels_last: keep the backbone and its input in channels-last memory format (faster convs
            on tensor-core GPUs under mixed precision). Ignored with a warning on CPU.
        compile_backbone: ``torch.compile`` the backbone in place at fit start (state-dict keys unchanged).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: MarginHead,
        num_classes: int = 1000,
        classifier: ClassifierFactory | None = None,
        optimizer: OptimizerFactory | None = None,
        lr_schedule: LRSchedule | None = None,
        no_decay_norm_and_bias: bool = True,
        channels_last: bool = False,
        compile_backbone: bool = False,
    ) -> None:
        super().__init__()
        # The resolved YAML (saved by the CLI) is the record of hyper-parameters; the checkpoint
        # keeps only tensors and plain values so it loads with torch.load(weights_only=True).
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        embedding_dim = int(getattr(backbone, "embedding_dim"))
        if classifier is None:
            from fr_lightning.classifiers import FullFC

            self.classifier = FullFC(embedding_dim, num_classes, getattr(head, "subcenters", 1))
        else:
            self.classifier = classifier(embedding_dim, num_classes)
        head_k, fc_k = getattr(head, "subcenters", 1), getattr(self.classifier, "subcenters", 1)
        if head_k != fc_k:
            raise ValueError(
                f"model.init_args.head has subcenters={head_k} but model.init_args.classifier has "
                f"subcenters={fc_k}; set both to the same value."
            )
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule or LRSchedule()
        self.no_decay_norm_and_bias = no_decay_norm_and_bias
        self.channels_last = channels_last
        self.compile_backbone = compile_backbone
        self.method_modules = nn.ModuleDict()
        self.methods: list[Method] = []
        self._features: Tensor | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self.step_diagnostics: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Collect the trainer's Method callbacks, validate them and register their parts."""
        methods = [cb for cb in self.trainer.callbacks if isinstance(cb, Method)]
        self.attach_methods(methods)
        self._setup_sharded_classifier(self.trainer.world_size, self.trainer.global_rank)
        if self.channels_last and self.trainer.strategy.root_device.type == "cpu":
            # torch 2.13's oneDNN backward of a strided 1x1 convolution corrupts the heap on
            # channels-last fp32 CPU tensors (iResNet's shortcut): the switch is for GPUs.
            rank_zero_warn("channels_last is ignored on CPU (a speed switch for GPUs; unsafe on CPU with torch 2.13)")
            self.channels_last = False
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if self.compile_backbone and stage == "fit" and not getattr(self, "_compiled", False):
            # nn.Module.compile keeps the parameter names (torch.compile(m) would add "_orig_mod.").
            self.backbone.compile()
            self._compiled = True

    def _setup_sharded_classifier(self, world_size: int, rank: int) -> None:
        """Shard a model-parallel classifier (PartialFC) and keep its weight out of DDP's averaging.

        DDPStrategy wraps this LightningModule itself, so DDP reads ``_ddp_params_and_buffers_to_ignore``
        from it with names relative to it.
        """
        if not hasattr(self.classifier, "ddp_ignore"):
            return
        self.classifier.setup(world_size, rank)
        ignore = self.classifier.ddp_ignore("classifier.")
        if ignore:
            if not getattr(self.head, "softmax", True):
                raise ValueError(f"{type(self.head).__name__} is not softmax-based; it cannot be used with a sharded classifier")
            from torch.nn.parallel import DistributedDataParallel

            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, ignore)

    # ------------------------------------------------------------ checkpoint
    def _sharded_param_index(self) -> int | None:
        """Index of the sharded classifier weight in the optimizer's flattened parameter list."""
        weight = getattr(self.classifier, "weight", None)
        if not hasattr(self.classifier, "gather_rows") or weight is None:
            return None
        groups = self.trainer.optimizers[0].param_groups if self.trainer.optimizers else self.parameter_groups()
        params = [p for g in groups for p in g["params"]]  # type: ignore[attr-defined]
        return next((i for i, p in enumerate(params) if p is weight), None)

    def on_save_checkpoint(self, checkpoint: dict[str, object]) -> None:
        """Store the sharded classifier's optimizer state as full matrices (resume on any world size)."""
        index = self._sharded_param_index()
        states = checkpoint.get("optimizer_states")
        if index is None or not states:
            return
        state = states[0]["state"].get(index, {})  # type: ignore[index]
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == self.classifier.weight.shape:
                state[key] = self.classifier.gather_rows(value)
        checkpoint["sharded_classifier_param"] = index

    def on_load_checkpoint(self, checkpoint: dict[str, object]) -> None:
        """Take this rank's slice of the classifier's full optimizer state (weights: a load pre-hook)."""
        index = checkpoint.get("sharded_classifier_param")
        states = checkpoint.get("optimizer_states")
        if index is None or not states or not hasattr(self.classifier, "local_rows"):
            return
        state = states[0]["state"].get(index, {})  # type: ignore[index]
        for key, value in state.items():
            if isinstance(value, Tensor) and value.ndim == 2:
                state[key] = self.classifier.local_rows(value)

    def attach_methods(self, methods: list[Method]) -> None:
        """Sort, validate and build ``methods`` (also usable without a trainer, e.g. in tests)."""
        self.methods = check_methods(methods)
        for method in self.methods:
            if method.name not in self.method_modules:
                part = method.build(self)
                if part is not None:
                    self.method_modules[method.name] = part
        if any(getattr(m, "uses_features", False) for m in self.methods) and self._hook is None:
            layer = self.backbone.get_submodule(self.backbone.feature_layer)
            self._hook = layer.register_forward_hook(self._keep_features)

    def _keep_features(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._features = output

    # ---------------------------------------------------------------- forward
    def forward(self, images: Tensor) -> Tensor:
        """Raw embeddings ``[B, D]`` of normalised images."""
        return self.backbone(images)

    def embedding_network(self) -> nn.Module:
        """The network that validation, test, predict and export embed with (``images -> [B, D]``).

        The backbone by default; a stacked method may define another evaluation embedding.
        """
        return self.backbone

    def embed(self, images: Tensor, flip: bool = True) -> Tensor:
        """Evaluation embedding: raw embedding plus that of the mirrored image (flip test), unnormalised."""
        net = self.embedding_network()
        emb = net(images)
        if flip:
            emb = emb + net(torch.flip(images, dims=[3]))
        return emb

    def forward_train(self, images: Tensor, labels: Tensor, target_margin: Tensor | None = None) -> StepOutput:
        """Backbone -> classifier -> head -> per-sample loss for one view of the batch.

        ``target_margin`` (``[B]``, optional) is subtracted from each sample's target cosine
        before the head (a per-sample additive margin on top of the head's own); the returned
        ``StepOutput.cosine`` stays the unshifted cosine.
        """
        self._features = None
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        embeddings = self.backbone(images)
        features = self._features
        cosine, target = self.classifier(embeddings, labels)
        # The head sees the rows the classifier scored: this batch, or every rank's under PartialFC.
        rows = self.classifier.rows(embeddings) if hasattr(self.classifier, "rows") else embeddings
        norms = rows.float().norm(dim=1)
        unit = F.normalize(rows.float(), dim=1)
        head_cosine = cosine
        if target_margin is not None:
            # Out of place, in float32 (heads compute margins in float32); rows with label -1
            # (no positive in this shard) get no shift.
            dtype = torch.float64 if cosine.dtype == torch.float64 else torch.float32
            if target_margin.shape[0] != cosine.shape[0]:
                target_margin = self.classifier.rows(target_margin.detach())  # sharded classifier
            has_target = (target >= 0).to(dtype).unsqueeze(1)
            onehot = torch.zeros_like(cosine, dtype=dtype).scatter(1, target.clamp_min(0).unsqueeze(1), 1.0)
            head_cosine = cosine.to(dtype) - onehot * has_target * target_margin.to(dtype).unsqueeze(1)
        logits = self.head(head_cosine, target, norms=norms, embeddings=unit)
        per_sample = self.head.loss(head_cosine, target, norms=norms, embeddings=unit)
        if per_sample is None:
            per_sample = self.classifier.cross_entropy(logits, target)
        return StepOutput(embeddings, cosine, target, logits, per_sample, features)

    def training_step(self, batch: FaceBatch, batch_idx: int) -> Tensor:
        """Apply method transforms, compute the weighted supervised loss plus method terms."""
        for method in self.methods:
            batch = method.transform_batch(batch, self)
        margins = [m for method in self.methods if (m := method.target_margins(batch, self)) is not None]
        margin = torch.stack(margins).sum(0) if margins else None
        out = self.forward_train(batch.images, batch.labels, margin)
        weights = [w for m in self.methods if (w := m.sample_weights(batch, out, self)) is not None]
        loss = reduce_loss(out.per_sample_loss, combine_weights(weights), valid=batch.labels >= 0)
        bsz = len(batch)
        ce = loss
        self.log("train/loss/ce", loss.detach(), batch_size=bsz)
        terms: dict[str, Tensor] = {f"head/{k}": v for k, v in self.head.loss_terms(out.embeddings.float().norm(dim=1)).items()}
        for method in self.methods:
            for key, value in method.loss_terms(batch, out, self).items():
                terms[f"{method.name}/{key}"] = value
        for key, value in terms.items():
            loss = loss + value
            self.log(f"train/loss/{key}", value.detach(), batch_size=bsz)
        with torch.no_grad():
            # Accuracy of the nearest centre (no margin), as a classifier would be used.
            valid = out.labels >= 0
            pred = self.classifier.predict(out.cosine)
            acc = (pred[valid] == out.labels[valid]).float().mean() if valid.any() else pred.new_zeros((), dtype=torch.float32)
        # Read by NanGuard to name the non-finite term in its diagnostic.
        self.step_diagnostics = {
            "loss/ce": ce.detach(),
            **{f"loss/{k}": v.detach() for k, v in terms.items()},
            "embedding_norm": out.embeddings.detach().float().norm(dim=1),
        }
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bsz)
        self.log("train/acc", acc, prog_bar=True, batch_size=bsz)
        self.log("train/embedding_norm", out.embeddings.detach().float().norm(dim=1).mean(), batch_size=bsz)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Flip-test embeddings of one verification batch (the verification callback evaluates them)."""
        return {"embeddings": self.embed(batch["images"]).float(), "index": batch["index"]}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Same as validation, on the test verification sets."""
        return self.validation_step(batch, batch_idx, dataloader_idx)

    def predict_step(self, batch: dict[str, Tensor] | FaceBatch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """L2-normalised flip-test embeddings."""
        images = batch.images if isinstance(batch, FaceBatch) else batch["images"]
        return F.normalize(self.embed(images).float(), dim=1)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The verification and fairness evaluators are part of the model: they run whatever trainer is used."""
        from fr_lightning.eval.callbacks import VerificationCallback
        from fr_lightning.eval.fairness import FairnessEvaluation

        present = self.trainer.callbacks
        extra: list[pl.Callback] = []
        if not any(isinstance(cb, VerificationCallback) for cb in present):
            extra.append(VerificationCallback())
        if not any(isinstance(cb, FairnessEvaluation) for cb in present):
            extra.append(FairnessEvaluation())  # silent unless per-group sets are validated
        return extra

    # ---------------------------------------------------------- optimisation
    def parameter_groups(self) -> list[dict[str, object]]:
        """Two groups: decayed (weights) and, if switched on, non-decayed (1-D: BN, PReLU, bias)."""
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        if not self.no_decay_norm_and_bias:
            return [{"params": [p for _, p in params]}]
        decay = [p for _, p in params if p.ndim > 1]
        no_decay = [p for _, p in params if p.ndim <= 1]
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self) -> dict[str, object]:
        """Optimizer over the parameter groups and a per-step LambdaLR from ``lr_schedule``."""
        groups = self.parameter_groups()
        if self.optimizer_factory is None:
            optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
        else:
            optimizer = self.optimizer_factory(groups)
        if getattr(self.classifier, "sparse_grad", False):
            optimizer = self._row_sparse(optimizer)
        total = int(self.trainer.estimated_stepping_batches)
        schedule = self.lr_schedule
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}

    @staticmethod
    def _row_sparse(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The same SGD as a :class:`RowSparseSGD` (sparse centre gradients need a row-wise step)."""
        from fr_lightning.optim import RowSparseSGD

        if isinstance(optimizer, RowSparseSGD):
            return optimizer
        if type(optimizer) is not torch.optim.SGD:
            raise ValueError(
                f"model.init_args.classifier has sparse_grad: true, which needs SGD as model.init_args.optimizer "
                f"(got {type(optimizer).__name__}); use torch.optim.SGD or set sparse_grad: false"
            )
        return RowSparseSGD(optimizer.param_groups, **optimizer.defaults)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping, extended to sparse (row-sampled) centre gradients."""
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not gradient_clip_val or not any(p.grad.is_sparse for p in params):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for p in params:
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()
        values = [p.grad._values() if p.grad.is_sparse else p.grad for p in params]  # views: edited in place
        if gradient_clip_algorithm in (None, "norm"):
            total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v.float()) for v in values]))
            scale = (float(gradient_clip_val) / (total + 1e-6)).clamp(max=1.0)
            for v in values:
                v.mul_(scale.to(v.dtype))
        else:
            for v in values:
                v.clamp_(-float(gradient_clip_val), float(gradient_clip_val))

    # ---------------------------------------------------------------- export
    def export_backbone(self, path: str | Path) -> Path:
        """Write only the embedding network's state_dict (insightface ``backbone.pth`` layout)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()}
        torch.save(state, path)
        return path
