"""The ``fr`` command's run-tracking steps, as a LightningCLI mixin: W&B naming and config,
``--ckpt_path last``, continuing the checkpoint's W&B run, and the lost final validation."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info

from fr_lightning.tracking.logger import FaceWandbLogger
from fr_lightning.tracking.resume import AUTO_VALUES, ResumeState, checkpoint_run_id, find_last_checkpoint
from fr_lightning.tracking.run_info import recipe_name, run_config, run_tags

__all__ = ["RunTrackingCLI"]


class RunTrackingCLI:
    """Mix into a ``LightningCLI`` subclass (before ``LightningCLI`` in the bases)."""

    def _subcommand_config(self):  # noqa: ANN202 - a jsonargparse Namespace
        return self.config.get(self.subcommand) if self.subcommand else self.config  # type: ignore[attr-defined]

    def before_instantiate_classes(self) -> None:
        """A stock ``WandbLogger`` in a config becomes :class:`FaceWandbLogger` (same arguments,
        plus naming and a clean finish)."""
        loggers = self._subcommand_config().get("trainer.logger")
        for entry in loggers if isinstance(loggers, list) else [loggers]:
            if getattr(entry, "class_path", None) == "lightning.pytorch.loggers.WandbLogger":
                entry.class_path = "fr_lightning.tracking.FaceWandbLogger"

    def instantiate_classes(self) -> None:
        """Instantiate, resolve the checkpoint to resume, then describe the W&B run before it exists."""
        super().instantiate_classes()  # type: ignore[misc]
        self.resolve_resume()
        self.describe_run()

    def _wandb_loggers(self) -> list[FaceWandbLogger]:
        return [lg for lg in self.trainer.loggers if isinstance(lg, FaceWandbLogger)]  # type: ignore[attr-defined]

    def resolve_resume(self) -> None:
        """``fit --ckpt_path last|auto``: the newest valid checkpoint of the run (or none: a fresh
        start, so one command serves the first attempt and every requeue). Any ``fit`` from a
        checkpoint continues the W&B run whose id the checkpoint holds."""
        if self.subcommand != "fit":  # type: ignore[attr-defined]
            return
        init = self.config_init[self.subcommand]  # type: ignore[attr-defined]
        ckpt = init.get("ckpt_path")
        if ckpt is None:
            return
        loggers = self._wandb_loggers()
        logger = loggers[0] if loggers else None
        fixed_id = logger.run_id if logger is not None else None  # an id set by the user
        if str(ckpt) in AUTO_VALUES:
            if logger is not None:
                root = Path(logger.save_dir or self.trainer.default_root_dir) / str(logger.name)  # type: ignore[attr-defined]
                found = find_last_checkpoint(root, fixed_id)
            else:
                base = Path(self.trainer.default_root_dir)  # type: ignore[attr-defined]
                found = find_last_checkpoint(base.parent, base.name)
            if found is None:
                rank_zero_info(f"--ckpt_path {ckpt}: no checkpoint of this run yet; starting from scratch")
                init["ckpt_path"] = None
                return
            rank_zero_info(f"--ckpt_path {ckpt}: resuming from {found}")
            init["ckpt_path"] = ckpt = str(found)
        if logger is not None and fixed_id is None:
            run_id = checkpoint_run_id(Path(ckpt))
            if run_id:
                logger.set_run_id(run_id)

    def describe_run(self) -> None:
        """Hand the resolved config, recipe, methods and tags to the W&B logger(s)."""
        from fr_lightning.methods.base import Method

        loggers = self._wandb_loggers()
        if not loggers:
            return
        resolved = self._subcommand_config().as_dict()
        methods = [cb.name for cb in self.trainer.callbacks if isinstance(cb, Method)]  # type: ignore[attr-defined]
        recipe = recipe_name(resolved.get("config"))
        for logger in loggers:
            logger.describe(run_config(resolved, methods, recipe), recipe, run_tags(resolved, methods), job_type=self.subcommand or "fit")  # type: ignore[attr-defined]

    def after_fit(self) -> None:
        """Run the final validation a resumed fit would otherwise never run (see ``ResumeState``)."""
        state = next((cb for cb in self.trainer.callbacks if isinstance(cb, ResumeState)), None)  # type: ignore[attr-defined]
        if state is not None and state.needs_final_validation:
            rank_zero_info("The final validation of this run never ran (it was interrupted); running it now.")
            state.needs_final_validation = False
            self.trainer.validate(self.model, datamodule=self.datamodule)  # type: ignore[attr-defined]
