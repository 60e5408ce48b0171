"""``fr fit|validate|test|predict``: the LightningCLI subclass, its always-on callbacks and the data -> model links."""

from __future__ import annotations

import os
import sys
from argparse import ArgumentError
from pathlib import Path

# W&B defaults must be in place before wandb is imported (albumentations' are set by the package).


def _wandb_key_available() -> bool:
    """True when W&B could log online without prompting (an API key in the env or ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def _configure_wandb_env() -> None:
    """Never prompt or hang: without a key, W&B runs offline (users sync later)."""
    if not _wandb_key_available():
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")


_configure_wandb_env()

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback  # noqa: E402
from lightning.pytorch.utilities import rank_zero_info  # noqa: E402

from fr_lightning.callbacks import NanGuard  # noqa: E402
from fr_lightning.tracking import RunStatus  # noqa: E402
from fr_lightning.tracking.checkpointing import FaceCheckpoint  # noqa: E402
from fr_lightning.tracking.cli_hooks import RunTrackingCLI  # noqa: E402
from fr_lightning.tracking.resume import ResumeState  # noqa: E402
from fr_lightning.cli.compose import compose  # noqa: E402
from fr_lightning.cli.config_errors import config_files, locate  # noqa: E402
from fr_lightning.cli.mistakes import (  # noqa: E402
    UserMistake,
    cuda_missing_message,
    init_from_size_problem,
    missing_config_message,
    unknown_class,
    unknown_class_message,
    where_value,
)
from fr_lightning.tracking.exit_codes import EXIT_FAILED  # noqa: E402
from fr_lightning.utils.rundir import run_dir  # noqa: E402


class RunDirSaveConfig(SaveConfigCallback):
    """Saves the resolved config as ``<run dir>/config.yaml`` next to the run's checkpoints."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        path = run_dir(trainer) / self.config_filename
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


class LRMonitor(LearningRateMonitor):
    """LearningRateMonitor that stays quiet (instead of failing) when logging is switched off."""

    def on_train_start(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


class WandbNotice(pl.Callback):
    """Prints where an offline W&B run went and how to upload it."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or os.environ.get("WANDB_MODE") != "offline":
            return
        for logger in trainer.loggers:
            experiment = getattr(logger, "_experiment", None)  # never create a run here
            directory = getattr(experiment, "dir", None)
            if isinstance(directory, str) and directory:
                print(f"\nW&B logged offline to {Path(directory).parent}\n  upload it with: wandb sync {Path(directory).parent}")


class FaceCLI(RunTrackingCLI, LightningCLI):
    """LightningCLI with the project's always-on callbacks and the data -> model links; run
    tracking (W&B naming, ``--ckpt_path last``, final validation) comes from :class:`RunTrackingCLI`."""

    def parse_arguments(self, parser: LightningArgumentParser, args: object) -> None:
        """Compose the ``--config`` files, parse, and on a config error name the YAML file and key.

        Composition (:mod:`fr_lightning.cli.compose`) departs from plain LightningCLI in
        two ways: ``trainer.callbacks`` of several ``--config`` files are appended, not replaced,
        and a config file may ``extends`` others.
        """
        parser.exit_on_error = False
        argv = list(args) if isinstance(args, list) else (sys.argv[1:] if args is None else None)
        files = config_files(argv) if argv is not None else []
        for path in files:
            named_file = path.suffix in (".yaml", ".yml", ".json") or not any(c in str(path) for c in "\n:{")
            if named_file and not path.exists():
                raise UserMistake(missing_config_message(path))
        saved_argv = list(sys.argv)
        try:
            if argv is not None:
                composed = compose(argv)
                files = composed.files
                if args is None:  # from the shell: hand the composed line on as sys.argv, as LightningCLI expects
                    sys.argv = [sys.argv[0], *composed.argv]
                else:
                    args = composed.argv
        except ValueError as err:
            print(f"fr: invalid configuration: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        try:
            super().parse_arguments(parser, args)
            if argv is not None:
                self._record_config_files(config_files(argv))
        except ArgumentError as err:
            argv = argv if argv is not None else []
            where = locate(str(err), files, argv)
            unknown = unknown_class(str(err))
            if unknown is not None:
                where = where or where_value(unknown[1], files, argv)
                raise UserMistake(unknown_class_message(*unknown, where)) from None
            lines = [f"fr: invalid configuration: {err}"]
            if where:
                lines.append("The problem is at:")
                lines += [f"  {w}" for w in where]
            print("\n".join(lines), file=sys.stderr)
            raise SystemExit(2) from None
        finally:
            sys.argv = saved_argv

    def _record_config_files(self, files: list[Path]) -> None:
        """Keep the ``--config`` files as the user gave them in the parsed config (run naming reads them).

        Composition hands some files on as YAML strings (an ``extends`` recipe's own part, stacked
        callbacks); the record should still say ``recipes/lowres.yaml``, not its parts.
        """
        if not files:
            return
        subcommand = self.config.get("subcommand")
        node = self.config.get(subcommand) if subcommand else self.config
        if node is not None and "config" in node:
            node["config"] = [Path(f) for f in files]

    def before_fit(self) -> None:
        """Check ``--ckpt_path`` before Lightning reads it; a resumed run does not apply ``init_from``."""
        if self._check_checkpoint() and getattr(self.model, "init_from", None):
            self.model._initialised_from = True  # every tensor comes back from the checkpoint
            rank_zero_info("resuming from --ckpt_path: model.init_args.init_from is not applied")

    def before_validate(self) -> None:
        """Check ``--ckpt_path`` before Lightning reads it."""
        self._check_checkpoint()

    before_test = before_predict = before_validate

    def _check_checkpoint(self) -> bool:
        """True when ``--ckpt_path`` names a checkpoint this model can resume; exit 2 with one paragraph when not."""
        ckpt = self.config_init[self.subcommand].get("ckpt_path")
        if not ckpt or not Path(str(ckpt)).is_file():
            return False  # none, or a keyword Lightning resolves (last, best, hpc)
        problem = resume_problem(Path(str(ckpt)), self.model)
        if problem:
            print(f"fr {self.subcommand}: {problem}", file=sys.stderr)
            raise SystemExit(2)
        return True

    def _instantiate_trainer(self, config: dict, callbacks: list) -> pl.Trainer:
        """``--trainer.enable_checkpointing=false`` also removes the always-on checkpoint callback."""
        if config.get("enable_checkpointing") is False:
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        return super()._instantiate_trainer(config, [*callbacks, RunStatus(), ResumeState()])

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Checkpoints at every epoch end and every 30 min, last 3 kept, written atomically.
        parser.add_lightning_class_args(FaceCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.save_last": True, "checkpoint.filename": "step{step:07d}", "checkpoint.auto_insert_metric_name": False, "checkpoint.save_top_k": -1}
        )
        parser.add_lightning_class_args(LRMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(WandbNotice, "wandb_notice")
        # Always on: a skipped non-finite step costs one gradient-norm reduction per step.
        parser.add_lightning_class_args(NanGuard, "nan_guard")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        # data.image_size -> the backbone's input_size: see before_instantiate_classes.

    def before_instantiate_classes(self) -> None:
        """Link ``data.image_size`` to the backbone's ``input_size`` (then the run-tracking steps).

        The crop size is the backbone's input size, so configs set ``data.image_size`` only; a
        backbone ``input_size`` in a config is overridden by it, and config.yaml records both.
        Done here rather than with ``parser.link_arguments``: jsonargparse's links cannot target
        a backbone given as a factory function (``class_path: fr_lightning.backbones.iresnet50``).
        """
        config = self._subcommand_config()
        size = config.get("data.init_args.image_size")
        backbone = config.get("model.init_args.backbone")
        init_args = getattr(backbone, "init_args", None)
        if size is not None and init_args is not None and "input_size" in init_args:
            init_args.input_size = int(size)
        init_from = config.get("model.init_args.init_from")
        if init_from and size is not None and Path(str(init_from)).is_file():
            problem = init_from_size_problem(Path(str(init_from)), int(size))
            if problem:
                raise UserMistake(problem)
        accelerator = config.get("trainer.accelerator")
        if isinstance(accelerator, str) and accelerator.lower() in ("gpu", "cuda") and not torch.cuda.is_available():
            raise UserMistake(cuda_missing_message(accelerator))
        super().before_instantiate_classes()

    def instantiate_classes(self) -> None:
        """Instantiate, naming ``data.init_args.image_size`` when the backbone cannot take that input size."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            if "input_size" not in str(err) and "image_size" not in str(err):
                raise
            size = self._subcommand_config().get("data.init_args.image_size")
            raise UserMistake(
                f"data.init_args.image_size={size} does not fit the backbone: {err}. data.init_args.image_size sets "
                "both the face crop and the backbone's input_size; use a larger size (112 for insightface "
                "models and crops, the size the data was aligned to otherwise)."
            ) from err

    def after_fit(self) -> None:
        """A fit that ran no step because no full batch fits in the data is an error, not a success."""
        if self.trainer.num_training_batches == 0 and self.trainer.limit_train_batches != 0:  # type: ignore[attr-defined]
            raise UserMistake(self._no_batches_message(), code=EXIT_FAILED)
        super().after_fit()

    def _no_batches_message(self) -> str:
        """Why the training loader yields no batch: the batch size, the dataset size per device, the fix."""
        data = self.datamodule  # type: ignore[attr-defined]
        batch = getattr(data, "batch_size", None)
        world = max(int(self.trainer.world_size), 1)  # type: ignore[attr-defined]
        try:
            size: int | None = len(data.train_set)
        except TypeError:
            size = None
        have = f"{size} training images" if size is not None else "fewer training images than one batch"
        if size is not None and world > 1:
            have += f" ({size // world} per device on {world} devices)"
        return (
            f"no training batches: data.init_args.batch_size={batch} but the data has {have}. Incomplete batches "
            "are dropped (every step sees a full batch), so an epoch holds no step and nothing was trained. "
            "Set --data.init_args.batch_size to at most the number of images per device, or use more data."
        )


def resume_problem(path: Path, model: object) -> str | None:
    """Why ``--ckpt_path path`` cannot resume ``model`` (None when it can): not a Lightning checkpoint
    (e.g. a ``backbone.pth``), or a classifier trained on another number of classes."""
    from fr_lightning.deploy.weights import describe_contents, is_lightning_checkpoint, peek_weights

    try:
        data = peek_weights(path)
    except ValueError as err:
        return str(err)
    hint = (
        f"To start training from these weights instead, pass them as --model.init_args.init_from={path} "
        "(the backbone loads strictly; a checkpoint's classifier is kept only when the class count matches; "
        "optimizer, schedule and step count start fresh). See docs/finetune.md."
    )
    if not is_lightning_checkpoint(data):
        return (
            f"{path} is not a checkpoint of fr fit (it has no 'pytorch-lightning_version' entry; it is {describe_contents(data)}). "
            f"--ckpt_path resumes an interrupted run from its own checkpoint. {hint}"
        )
    classifier = getattr(model, "classifier", None)
    own = getattr(classifier, "weight", None)
    theirs = data["state_dict"].get("classifier.weight")  # type: ignore[index]
    if isinstance(own, torch.Tensor) and isinstance(theirs, torch.Tensor) and theirs.shape[0] != own.shape[0]:
        k = max(int(getattr(classifier, "subcenters", 1)), 1)
        return (
            f"{path} was trained on {theirs.shape[0] // k} classes, but this run's data has {own.shape[0] // k} "
            f"(model.init_args.num_classes comes from the data). --ckpt_path resumes a run on its own data. {hint}"
        )
    return None


def cli_main(args: list[str] | None = None, run: bool = True) -> FaceCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (tests use it)."""
    return FaceCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunDirSaveConfig,
        seed_everything_default=0,
        trainer_defaults={
            "logger": {
                "class_path": "fr_lightning.tracking.FaceWandbLogger",
                "init_args": {"project": "fr-lightning", "save_dir": "runs"},
            },
            "default_root_dir": "runs",
        },
        parser_kwargs={"default_env": False, "exit_on_error": False},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )
