"""`SaveConfigCallback`: writes the CLI's parsed configuration next to the run's logs."""

from __future__ import annotations

import os
from typing import Any

from fulmen.callbacks.callback import Callback
from fulmen.utilities.model_helpers import is_overridden


class SaveConfigCallback(Callback):
    """Save the LightningCLI configuration as `config_filename` in `trainer.log_dir` when a run sets up (rank 0).

    Args:
        parser: the parser that parsed `config`.
        config: the parsed configuration.
        config_filename: name of the file written in the log dir.
        overwrite: replace an existing file; by default an existing one stops the run (it belongs to another run).
        multifile: keep the structure of several input config files when saving.
        save_to_log_dir: write to the log dir; `False` only with a subclass that overrides `save_config`.
    """

    def __init__(self, parser: Any, config: Any, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False, save_to_log_dir: bool = True) -> None:
        self.parser = parser
        self.config = config
        self.config_filename = config_filename
        self.overwrite = overwrite
        self.multifile = multifile
        self.save_to_log_dir = save_to_log_dir
        self.already_saved = False
        if not save_to_log_dir and not is_overridden("save_config", self, SaveConfigCallback):
            raise ValueError(
                "`SaveConfigCallback(save_to_log_dir=False)` would save nothing: subclass SaveConfigCallback and "
                "implement `save_config` to store the config elsewhere, or keep `save_to_log_dir=True`."
            )

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            self._write(trainer)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        # Every rank agrees on whether later setups (e.g. test after fit) still have to save.
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def _write(self, trainer: Any) -> None:
        log_dir = trainer.log_dir
        config_path = os.path.join(log_dir, self.config_filename)
        if not self.overwrite:
            # Decided on rank 0 and shared, so all ranks stop together.
            exists = trainer.strategy.broadcast(trainer.is_global_zero and os.path.isfile(config_path))
            if exists:
                raise RuntimeError(
                    f"{type(self).__name__} expected {config_path} to NOT exist: stopping so as not to overwrite the "
                    "results of a previous run. Delete that file, use another log directory, disable config saving "
                    "with `LightningCLI(save_config_callback=None)`, or allow overwriting with "
                    '`LightningCLI(save_config_kwargs={"overwrite": True})`.'
                )
        if trainer.is_global_zero:
            # The logger usually creates the log dir on its first write, which has not happened yet.
            os.makedirs(log_dir, exist_ok=True)
            self.parser.save(self.config, config_path, skip_none=False, overwrite=self.overwrite,
                             multifile=self.multifile)

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Override to also store the config elsewhere (e.g. `trainer.logger.log_hyperparams`); called on rank 0
        only, so it must not make collective calls."""
