"""FaceRecognitionModule: backbone + classifier + margin head + stacked method hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from fr_lightning.backbones.base import FaceBackbone
from fr_lightning.batch import FaceBatch, StepContext, StepOutput
from fr_lightning.classifiers.base import Classifier
from fr_lightning.criterion import Criterion
from fr_lightning.functional.reduce import combine_weights, reduce_loss
from fr_lightning.heads.base import MarginHead
from fr_lightning.methods.base import Method, check_methods, check_needs
from fr_lightning.optim import clip_sparse_gradients_, row_sparse_optimizer
from fr_lightning.schedules import LRSchedule

#: Builds the classifier from (embedding_dim, num_classes); YAML gives it as a class_path.
ClassifierFactory = Callable[[int, int], Classifier]
#: Builds the optimizer from parameter groups; YAML gives it as a class_path (torch.optim.SGD, ...).
OptimizerFactory = Callable[[Iterator[nn.Parameter]], Optimizer]

__all__ = ["FaceRecognitionModule"]


class FaceRecognitionModule(pl.LightningModule):
    """Trains a face-embedding backbone with a margin-based classification loss.

    Args:
        backbone: the embedding network, a :class:`~fr_lightning.backbones.FaceBackbone` (``forward(images) -> [B, D]``).
        head: margin head turning cosines into logits (ArcFace, CosFace, ...), or a pair-based head
            (Triplet, CentroidTriplet) that trains with no classifier at all (docs/methods.md,
            "Pair-based objectives").
        num_classes: number of identities; the CLI links it from the data module.
        classifier: class building the classifier from ``(embedding_dim, num_classes)``; default ``FullFC``.
        optimizer: optimizer class for the parameter groups; default SGD(lr=0.1, momentum=0.9, weight_decay=5e-4).
        lr_schedule: per-step schedule; default polynomial decay (power 2) without warm-up.
        no_decay_norm_and_bias: exclude 1-D parameters (BN/PReLU weights, biases) from weight decay.
        channels_last: keep the backbone and its input in channels-last memory format (faster convs
            on tensor-core GPUs under mixed precision). Ignored with a warning on CPU.
        compile_backbone: ``torch.compile`` the backbone in place at fit start (state-dict keys unchanged).
        init_from: weights to start from (fine-tuning): an insightface ``backbone.pth``, a
            ``backbone.pth`` of ``fr export`` or a ``.ckpt`` of ``fr fit`` (classifier and head kept
            when the class count matches). Not a resume: ``--ckpt_path`` resumes, and wins. See
            :mod:`fr_lightning.finetune` and docs/finetune.md.
        backbone_lr_scale: factor on the backbone's learning rate (e.g. 0.1 when fine-tuning).
        freeze_backbone_steps: keep the backbone fixed, BatchNorm statistics included, for the
            first this many optimizer steps (while a new classifier warms up).
    """

    def __init__(
        self,
        backbone: FaceBackbone,
        head: MarginHead,
        num_classes: int = 1000,
        classifier: ClassifierFactory | None = None,
        optimizer: OptimizerFactory | None = None,
        lr_schedule: LRSchedule | None = None,
        no_decay_norm_and_bias: bool = True,
        channels_last: bool = False,
        compile_backbone: bool = False,
        init_from: str | None = None,
        backbone_lr_scale: float = 1.0,
        freeze_backbone_steps: int = 0,
    ) -> None:
        super().__init__()
        # The resolved YAML (saved by the CLI) is the record of hyper-parameters; the checkpoint
        # keeps only tensors and plain values so it loads with torch.load(weights_only=True).
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        embedding_dim = int(backbone.embedding_dim)
        from fr_lightning.classifiers import FullFC, NoClassifier

        if getattr(head, "pair_based", False):
            # A pair-based head (Triplet, CentroidTriplet) trains with no classifier at all.
            self.classifier: Classifier = NoClassifier(embedding_dim) if classifier is None else classifier(embedding_dim, num_classes)
            if not isinstance(self.classifier, NoClassifier):
                raise ValueError(
                    f"model.init_args.head {type(head).__name__} is pair-based: it trains with no classifier; "
                    f"remove model.init_args.classifier ({type(self.classifier).__name__}), or keep the classifier "
                    "with a margin head and add the pair loss as the 'pair' method"
                )
        elif classifier is None:
            self.classifier = FullFC(embedding_dim, num_classes, head.subcenters)
        else:
            self.classifier = classifier(embedding_dim, num_classes)
            if isinstance(self.classifier, NoClassifier):
                raise ValueError(
                    f"model.init_args.classifier NoClassifier needs a pair-based head (Triplet, CentroidTriplet); "
                    f"model.init_args.head {type(head).__name__} turns class cosines into logits"
                )
        head_k, fc_k = head.subcenters, self.classifier.subcenters
        if head_k != fc_k:
            raise ValueError(
                f"model.init_args.head has subcenters={head_k} but model.init_args.classifier has "
                f"subcenters={fc_k}; set both to the same value."
            )
        # Built once: the module's classifier and head as one forward path (fr_lightning/criterion.py).
        self._criterion = Criterion(self.classifier, self.head)
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule or LRSchedule()
        self.no_decay_norm_and_bias = no_decay_norm_and_bias
        self.channels_last = channels_last
        self.compile_backbone = compile_backbone
        self.init_from = init_from
        self.backbone_lr_scale = backbone_lr_scale
        self.freeze_backbone_steps = freeze_backbone_steps
        self.method_modules = nn.ModuleDict()
        self.methods: list[Method] = []
        self._keep_features = False  # a stacked method needs the feature map (set by attach_methods)
        self.step_diagnostics: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Bind the classifier to the backbone and head; collect, validate and register the trainer's Method callbacks."""
        # Once per module (a fit's final validation calls setup again); ``fr fit --ckpt_path`` marks
        # it done, since a resumed run restores every tensor from its checkpoint.
        if self.init_from and not getattr(self, "_initialised_from", False):
            from fr_lightning.finetune import initialise_from

            initialise_from(self, self.init_from)  # before bind (F2C copies the backbone) and sharding
            self._initialised_from = True
        # Before a checkpoint is restored: what the classifier builds from them (F2C's gallery) is in its state.
        self.classifier.bind(self.backbone, self.head)
        methods = [cb for cb in self.trainer.callbacks if isinstance(cb, Method)]
        self.attach_methods(methods)
        self._setup_sharded_classifier(self.trainer.world_size, self.trainer.global_rank)
        # Again once the classifier knows whether it is sharded across ranks (local_logits).
        check_needs(self.methods, self.available_needs(), self._lacking_needs())
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
        """Shard a model-parallel classifier (PartialFC) and keep what the classifier lists out of DDP
        (a sharded weight, F2C's replicated pool): the one place that tells DDP what to ignore.

        DDPStrategy wraps this LightningModule itself, so DDP reads ``_ddp_params_and_buffers_to_ignore``
        from it with names relative to it.
        """
        self.classifier.setup(world_size, rank)
        if self.classifier.sharded and not self.head.softmax:
            raise ValueError(f"{type(self.head).__name__} is not softmax-based; it cannot be used with a sharded classifier")
        ignore = self.classifier.ddp_ignore("classifier.")
        if ignore:
            from torch.nn.parallel import DistributedDataParallel

            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, ignore)

    # ------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, object]) -> None:
        """The classifier stores its optimizer state in a layout any world size can resume from."""
        groups = self.trainer.optimizers[0].param_groups if self.trainer.optimizers else self.parameter_groups()
        self.classifier.save_optimizer_state(checkpoint, [p for g in groups for p in g["params"]])  # type: ignore[attr-defined]

    def on_load_checkpoint(self, checkpoint: dict[str, object]) -> None:
        """The classifier takes its own layout of the stored optimizer state back (before Lightning restores it)."""
        self.classifier.load_optimizer_state(checkpoint)

    @property
    def criterion(self) -> Criterion:
        """The module's classifier + head as one forward path (:mod:`fr_lightning.criterion`)."""
        if self._criterion.classifier is not self.classifier or self._criterion.head is not self.head:
            self._criterion = Criterion(self.classifier, self.head)  # a part was replaced after construction
        return self._criterion

    def attach_methods(self, methods: list[Method]) -> None:
        """Sort, validate and build ``methods`` (also usable without a trainer, e.g. in tests).

        Each method's declared needs are checked first (an error names the method and the need),
        so an incompatible stack fails here, before the first training step.
        """
        self.methods = check_methods(methods)
        refused = self.classifier.incompatible_methods
        for method in self.methods:
            if method.name in refused:
                raise ValueError(
                    f"method {method.name} cannot be combined with the classifier {type(self.classifier).__name__}: "
                    f"{refused[method.name]}"
                )
        self._refuse_per_sample_methods()
        check_needs(self.methods, self.available_needs(), self._lacking_needs())
        for method in self.methods:
            if method.name not in self.method_modules:
                part = method.build(self)
                if part is not None:
                    self.method_modules[method.name] = part
        embedders = [m.name for m in self.methods if m.embedding_network(self) is not None]
        if len(embedders) > 1:
            raise ValueError(f"methods {' and '.join(embedders)} each define the evaluation embedding; keep one of them.")
        self._keep_features = any("features" in m.needs() for m in self.methods)

    @property
    def pair_based(self) -> bool:
        """True when the head is pair-based (no classifier, no logits, one batch-level loss)."""
        return bool(getattr(self.head, "pair_based", False))

    def _refuse_per_sample_methods(self) -> None:
        """With a pair-based head the loss is one batch-level value: a method that shifts target
        logits or weights per-sample classifier losses has nothing to act on; refuse it, naming both."""
        if not self.pair_based:
            return
        for method in self.methods:
            hooks = [h for h in ("target_margins", "sample_weights") if getattr(type(method), h) is not getattr(Method, h)]
            if hooks:
                raise ValueError(
                    f"method {method.name} cannot be combined with the pair-based head {type(self.head).__name__}: "
                    f"its {' and '.join(hooks)} act on per-sample classifier losses, and a pair-based head has no classifier "
                    "(use a margin head and add the pair loss as the 'pair' method)"
                )

    def _lacking_needs(self) -> dict[str, str]:
        """Need -> the part of this run that rules it out (for the errors of :func:`check_needs`)."""
        if not self.pair_based:
            return {}
        why = f"the pair-based head {type(self.head).__name__} trains with no classifier"
        return {"full_logits": why, "local_logits": why}

    def available_needs(self) -> dict[str, bool]:
        """What this run provides of :data:`fr_lightning.methods.base.NEEDS` (needs it cannot tell are left out)."""
        criterion = self.criterion
        available = {
            "features": isinstance(self.backbone, FaceBackbone),
            "full_logits": criterion.full_logits and not self.pair_based,
            "local_logits": criterion.local_logits and not self.pair_based,
        }
        keys = self._training_sample_keys()
        if keys is not None:
            available.update({field: field in keys for field in ("landmarks", "group", "index")})
        return available

    def _training_sample_keys(self) -> set[str] | None:
        """Fields of the training set's first sample (None: no trainer, no map-style training set)."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        dataset = getattr(datamodule, "train_set", None)
        if dataset is None or isinstance(dataset, torch.utils.data.IterableDataset):  # a stream cannot be indexed
            return None
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__") or len(dataset) == 0:
            return None
        sample = dataset[0]
        return set(sample) if isinstance(sample, dict) else None

    # ---------------------------------------------------------------- forward
    def forward(self, images: Tensor) -> Tensor:
        """Raw embeddings ``[B, D]`` of normalised images."""
        return self.backbone(images)

    def embedding_network(self) -> nn.Module:
        """The network that validation, test, predict and export embed with (``images -> [B, D]``).

        The backbone, unless a stacked method defines another evaluation embedding through
        :meth:`Method.embedding_network` (at most one may; checked at setup).
        """
        for method in self.methods:
            net = method.embedding_network(self)
            if net is not None:
                return net
        return self.backbone

    def embed(self, images: Tensor, flip: bool = True) -> Tensor:
        """Evaluation embedding: raw embedding plus that of the mirrored image (flip test), unnormalised."""
        net = self.embedding_network()
        emb = net(images)
        if flip:
            emb = emb + net(torch.flip(images, dims=[3]))
        return emb

    def forward_train(
        self, images: Tensor, labels: Tensor, target_margin: Tensor | None = None, class_index: Tensor | None = None
    ) -> StepOutput:
        """Training-mode pass of the module's own network: backbone -> classifier -> head -> per-sample loss.

        ``target_margin`` (``[B]``, optional) is subtracted from each sample's target cosine
        before the head (a per-sample additive margin on top of the head's own); the returned
        ``StepOutput.cosine`` stays the unshifted cosine. ``class_index`` makes a sampled
        classifier score the classes of an earlier pass. The feature map is kept in
        ``StepOutput.features`` when a stacked method needs it.
        """
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = None
        if self._keep_features:
            embeddings, features = self.backbone.forward_with_features(images)
        else:
            embeddings = self.backbone(images)  # __call__: hooks and a compiled forward apply as usual
        return self.criterion(
            embeddings, labels, training=True, target_margin=target_margin, class_index=class_index, features=features
        )

    def training_step(self, batch: FaceBatch, batch_idx: int) -> Tensor:
        """Apply method transforms, compute the weighted supervised loss plus method terms."""
        for method in self.methods:
            batch = method.transform_batch(batch, self)
        self.classifier.prepare_batch(batch, self.backbone)  # sees the rows the classifier scores
        ctx = StepContext(batch)
        margins = [m for method in self.methods if (m := method.target_margins(batch, self)) is not None]
        ctx.target_margin = torch.stack(margins).sum(0) if margins else None
        out = ctx.out = self.forward_train(batch.images, batch.labels, ctx.target_margin)
        weights = [w for m in self.methods if (w := m.sample_weights(ctx, self)) is not None]
        ctx.weights = combine_weights(weights)
        loss = reduce_loss(out.per_sample_loss, ctx.weights, valid=batch.labels >= 0)
        bsz = len(batch)
        ce = loss
        # A pair-based head's loss is logged under its own key (train/loss/triplet, train/loss/ctl).
        main = getattr(self.head, "key", "ce") if self.pair_based else "ce"
        self.log(f"train/loss/{main}", loss.detach(), batch_size=bsz)
        terms: dict[str, Tensor] = {f"head/{k}": v for k, v in self.head.loss_terms(out.embeddings.float().norm(dim=1)).items()}
        for method in self.methods:
            for key, value in method.loss_terms(ctx, self).items():
                terms[f"{method.name}/{key}"] = value
        for key, value in terms.items():
            loss = loss + value
            self.log(f"train/loss/{key}", value.detach(), batch_size=bsz)
        acc = None
        if not self.pair_based:
            with torch.no_grad():
                # Accuracy of the nearest centre (no margin), as a classifier would be used.
                valid = out.labels >= 0
                pred = self.classifier.predict(out.cosine)
                acc = (pred[valid] == out.labels[valid]).float().mean() if valid.any() else pred.new_zeros((), dtype=torch.float32)
        # Read by NanGuard to name the non-finite term in its diagnostic.
        self.step_diagnostics = {
            f"loss/{main}": ce.detach(),
            **{f"loss/{k}": v.detach() for k, v in terms.items()},
            "embedding_norm": out.embeddings.detach().float().norm(dim=1),
        }
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bsz)
        if acc is not None:  # a pair-based head has no classifier to be accurate with
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
        if self.freeze_backbone_steps:
            from fr_lightning.finetune import BackboneFreeze

            extra.append(BackboneFreeze(self.freeze_backbone_steps))
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
        from fr_lightning.finetune import apply_lr_scales, split_backbone_groups

        groups = split_backbone_groups(self.parameter_groups(), self.backbone, self.backbone_lr_scale)
        if self.optimizer_factory is None:
            optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
        else:
            optimizer = self.optimizer_factory(groups)
        optimizer = row_sparse_optimizer(optimizer, self.classifier.sparse_grad)
        apply_lr_scales(optimizer)  # backbone_lr_scale, before the scheduler records the base rates
        total = int(self.trainer.estimated_stepping_batches)
        schedule = self.lr_schedule
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping; :func:`fr_lightning.optim.clip_sparse_gradients_` when a centre gradient is sparse."""
        if not clip_sparse_gradients_(optimizer, gradient_clip_val, gradient_clip_algorithm):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---------------------------------------------------------------- export
    def export_backbone(self, path: str | Path) -> Path:
        """Write only the evaluation embedding network's state_dict (:meth:`embedding_network`).

        The backbone's (insightface ``backbone.pth`` layout) unless a method defines another
        evaluation embedding (co-teaching's mean of peers: ``backbone.*`` and ``peer.*``).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.embedding_network().state_dict().items()}
        torch.save(state, path)
        return path
