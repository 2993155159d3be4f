"""Trainer: turns flags into collaborators once, then runs fit / validate / test / predict.

Owns: building the config, strategy, callbacks and loggers; the sequence of a run (`_run`) and
exception handling. The loops own what happens inside a stage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Generator
from datetime import timedelta
from functools import partial
from typing import Any

import torch

from fulmen.callbacks.callback_list import (attach_module_logging, build_trainer_callbacks, has_timer,
                                           merge_module_callbacks)
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.loops.evaluation_loop import EvaluationLoop
from fulmen.loops.fit_loop import FitLoop
from fulmen.loops.prediction_loop import PredictionLoop
from fulmen.optimization.scheduler_stepping import FitLoopStepper
from fulmen.results.metrics_router import MetricsRouter
from fulmen.strategies.select import (apply_determinism, apply_plugins, log_device_info, plugin_environment,
                                     select_accelerator, select_strategy)
from fulmen.trainer.checkpointing import Checkpointing
from fulmen.trainer.config import TrainerConfig, reject_unimplemented, select_profiler
from fulmen.trainer.data_source import DataSource
from fulmen.trainer.debug_flags import debug_tools
from fulmen.trainer.flag_sources import BarebonesLogRefusal, barebones_flags, defaults_from_environment
from fulmen.strategies.slurm_requeue import SLURMRequeue
from fulmen.trainer.hook_dispatch import HookDispatch
from fulmen.loggers.selection import build_loggers, log_hyperparameters, share_logger_versions
from fulmen.optimization.optimization import Optimization
from fulmen.trainer.run import Run
from fulmen.trainer.properties import TrainerProperties
from fulmen.trainer.run_checks import check_entry_arguments, check_run
from fulmen.trainer.signals import GracefulStop, SignalStop
from fulmen.trainer.stages import STAGE_OF_FN
from fulmen.trainer.state import RunningStage, TrainerFn, TrainerState, TrainerStatus
from fulmen.utilities.exceptions import _TunerExitException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn
from fulmen.utilities.warnings import PossibleUserWarning
# Real types for the flags' annotations: LightningCLI (jsonargparse) reads the signature to parse `--trainer.*`.
from collections.abc import Iterable
from typing import Literal, Union

from fulmen.accelerators.accelerator import Accelerator
from fulmen.callbacks.callback import Callback
from fulmen.loggers.logger import Logger
from fulmen.checkpoint_io import CheckpointIO
from fulmen.precision import Precision
from fulmen.strategies.cluster_environments import ClusterEnvironment
from fulmen.strategies.strategy import Strategy

_PrecisionInput = Union[Literal[64, 32, 16], Literal["64-true", "32-true", "16-mixed", "bf16-mixed", "16-true",
                                                      "bf16-true"], Literal["64", "32", "16", "bf16"]]
# LayerSync (Lightning's fourth kind) is left out: its module would load `fulmen.plugins`, which `import fulmen` defers.
_PluginInput = Union[Precision, ClusterEnvironment, CheckpointIO]


class Trainer(TrainerProperties):
    """Runs a LightningModule's training, validation, test and prediction loops (Lightning 2.x flags).

    Flags not passed are taken from `PL_TRAINER_<FLAG>` environment variables when set (as in Lightning).
    """

    @defaults_from_environment
    def __init__(
        self, *, accelerator: str | Accelerator = "auto", strategy: str | Strategy = "auto",
        devices: list[int] | str | int = "auto", num_nodes: int = 1, precision: _PrecisionInput | None = None,
        logger: Logger | Iterable[Logger] | bool | None = None, callbacks: list[Callback] | Callback | None = None,
        fast_dev_run: int | bool = False, max_epochs: int | None = None, min_epochs: int | None = None,
        max_steps: int = -1, min_steps: int | None = None, max_time: str | timedelta | dict[str, int] | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None, limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None, overfit_batches: int | float = 0.0,
        val_check_interval: int | float | str | timedelta | dict[str, int] | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None, log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None, enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None, accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None, benchmark: bool | None = None, inference_mode: bool = True,
        use_distributed_sampler: bool = True, profiler: Any = None, detect_anomaly: bool = False,
        barebones: bool = False, plugins: _PluginInput | list[_PluginInput] | None = None, sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0, default_root_dir: str | os.PathLike | None = None,
        enable_autolog_hparams: bool = True, model_registry: str | None = None,
        trace_hooks: bool | str | os.PathLike | Any = False,
        on_nonfinite: Literal["warn", "raise", "skip", "stop"] = "warn",
        fingerprint: bool | str | os.PathLike | None = False,
    ) -> None:
        reject_unimplemented(model_registry=model_registry)
        flags = dict(locals())
        # `fulmen.debug`'s tools for the debugging flags (values checked first; the guard is attached below).
        self._hook_tracer, self.nonfinite_guard, self._fingerprints = debug_tools(trace_hooks, on_nonfinite,
                                                                                  fingerprint)
        if barebones:
            flags = barebones_flags(flags)
            enable_checkpointing, logger = flags["enable_checkpointing"], flags["logger"]
            enable_progress_bar, enable_model_summary = flags["enable_progress_bar"], flags["enable_model_summary"]
        self.barebones = barebones
        # The signature above is the one place flag defaults live: the config picks its flags from the arguments.
        self._config = TrainerConfig.from_flags(flags)
        self._plugin_environment = plugin_environment(plugins)  # also read by SLURM auto-requeue
        self.strategy = select_strategy(accelerator, devices, strategy, num_nodes, precision,
                                        self._plugin_environment)
        apply_plugins(self.strategy, plugins, sync_batchnorm)
        self._accelerator = select_accelerator(accelerator, self.strategy.root_device)
        if self.strategy.accelerator is None:
            self.strategy.accelerator = self._accelerator
        else:  # a strategy built with its own accelerator keeps it (Lightning: `trainer.accelerator` is the strategy's)
            self._accelerator = self.strategy.accelerator
        log_device_info(self._accelerator)
        self._callbacks = build_trainer_callbacks(
            callbacks, enable_progress_bar is not False, enable_model_summary is not False,
            enable_checkpointing is not False, refuse_checkpoints=enable_checkpointing is False,
            max_time=self._config.max_time,
        )
        self._state = TrainerState()
        loggers = build_loggers(logger, self._config.default_root_dir, bool(self._config.fast_dev_run))
        # `trainer.loggers` reads and sets the router's list.
        self._metrics = MetricsRouter(self._state, self.strategy, loggers, self._config.log_every_n_steps)
        self.enable_autolog_hparams = enable_autolog_hparams
        self.use_distributed_sampler = use_distributed_sampler
        apply_determinism(deterministic, benchmark, self.strategy.root_device)
        self.profiler = select_profiler(profiler)  # before the hooks: they are profiled when it records
        self._hooks = HookDispatch(self, self.strategy)
        self._optimization = Optimization(self._hooks, self._config, self._state, self.strategy)
        self._checkpointing = Checkpointing(self._state, self._hooks, self.strategy, self._optimization,
                                            self._config.fast_dev_run)
        self.nonfinite_guard.attach(self)
        self._signals = GracefulStop()
        # The latest run (a fresh one per fit/validate/test/predict); before any, an empty one.
        self._current = Run(callbacks=self._callbacks)
        self._data = DataSource(self._current, self._hooks, self._config, self.strategy, use_distributed_sampler)

    # -- entry points ---------------------------------------------------------------------------

    def fit(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: LightningDataModule | None = None, ckpt_path: str | None = None,
            weights_only: bool | None = None) -> None:
        """Train `model` (with validation when it has a `validation_step` and validation data)."""
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        model = check_entry_arguments(self, TrainerFn.FITTING, model, datamodule, train_dataloaders, val_dataloaders)
        given = {RunningStage.TRAINING: train_dataloaders, RunningStage.VALIDATING: val_dataloaders}
        self._launch(TrainerFn.FITTING, model, datamodule, given, ckpt_path=ckpt_path, weights_only=weights_only)

    def validate(self, model: LightningModule | None = None, dataloaders: Any = None, ckpt_path: str | None = None,
                 verbose: bool = True, datamodule: LightningDataModule | None = None,
                 weights_only: bool | None = None) -> list[dict[str, float]]:
        """Run one validation epoch; return one metrics dict per dataloader."""
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(self, model: LightningModule | None = None, dataloaders: Any = None, ckpt_path: str | None = None,
             verbose: bool = True, datamodule: LightningDataModule | None = None,
             weights_only: bool | None = None) -> list[dict[str, float]]:
        """Run one test epoch; return one metrics dict per dataloader."""
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def predict(self, model: LightningModule | None = None, dataloaders: Any = None,
                datamodule: LightningDataModule | None = None, return_predictions: bool | None = None,
                ckpt_path: str | None = None, weights_only: bool | None = None) -> Any:
        """Run `predict_step` over the predict data; return the predictions (a list per dataloader if several)."""
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        model_given = model is not None
        model = check_entry_arguments(self, TrainerFn.PREDICTING, model, datamodule, dataloaders)
        return self._launch(TrainerFn.PREDICTING, model, datamodule, {RunningStage.PREDICTING: dataloaders}, ckpt_path=ckpt_path,
                         weights_only=weights_only, return_predictions=return_predictions is not False,
                         model_given=model_given)

    def _evaluate(self, fn: TrainerFn, model: Any, dataloaders: Any, ckpt_path: Any, verbose: bool,
                  datamodule: Any, weights_only: Any) -> list[dict[str, float]]:
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        model_given = model is not None
        model = check_entry_arguments(self, fn, model, datamodule, dataloaders)
        stage = STAGE_OF_FN[fn]
        results = self._launch(fn, model, datamodule, {stage: dataloaders}, ckpt_path=ckpt_path,
                            weights_only=weights_only, model_given=model_given)
        if verbose and self.is_global_zero and results is not None:  # None: a Tuner ended the call
            from fulmen.loops.results_table import print_results

            print_results(results, stage.value)
        return results

    # -- the run --------------------------------------------------------------------------------

    def _launch(self, fn: TrainerFn, model: LightningModule, *args: Any, **kwargs: Any) -> Any:
        """Run `_run` here, or in every process of a multi-process strategy (through its launcher)."""
        # Lightning keeps the last fit's sanity-check counts through later validate/test/predict calls.
        sanity = [] if fn == TrainerFn.FITTING else self._current.num_sanity_val_batches
        self._current = Run(fn=fn, module=model, callbacks=self._callbacks, num_sanity_val_batches=sanity)
        launcher = self.strategy.launcher
        if launcher is None:
            return self._run(fn, model, *args, **kwargs)
        from fulmen.strategies.launchers import SpawnResults  # loaded by the multi-process strategies anyway

        spawn_results = SpawnResults(self._spawn_results, self._collect_spawn_results)
        return launcher.launch(self._run, fn, model, *args, results=spawn_results, **kwargs)

    def _spawn_results(self, results: Any) -> dict[str, Any] | None:
        """What a spawned rank 0 sends back to the launching process (Lightning's ddp_spawn contract)."""
        if not self.is_global_zero:
            return None
        module = self.lightning_module
        callback = self.checkpoint_callback
        return {"results": results, "state": self._state.state_dict(),
                "state_dict": {key: value.cpu() for key, value in module.state_dict().items()},
                "callback_metrics": {key: value.cpu() for key, value in self.callback_metrics.items()},
                "log_origins": self._metrics.log_origins(),  # plain data, for `explain_metrics` in this process
                "best_model_path": getattr(callback, "best_model_path", None)}  # an OnExceptionCheckpoint has none

    def _collect_spawn_results(self, output: dict[str, Any]) -> None:
        from fulmen.core.compiled import match_compiled_keys

        # A submodule compiled in the ranks' `configure_model` is still uncompiled here: match its keys.
        self.lightning_module.load_state_dict(match_compiled_keys(self.lightning_module, output["state_dict"]))
        self._state.load_state_dict(output["state"])
        self._state.status = TrainerStatus.FINISHED
        self._metrics.update_callback_metrics(output["callback_metrics"], output["log_origins"])
        if output["best_model_path"]:  # set only when the first checkpoint callback keeps a best path
            self.checkpoint_callback.best_model_path = output["best_model_path"]

    def _run(self, fn: TrainerFn, model: LightningModule, datamodule: LightningDataModule | None,
             given_loaders: dict[str, Any], ckpt_path: str | None = None, weights_only: bool | None = None,
             return_predictions: bool = True, model_given: bool = True) -> Any:
        state = self._state
        state.fn, state.stage, state.status, state.should_stop = fn, STAGE_OF_FN[fn], TrainerStatus.RUNNING, False
        given = {stage: loaders for stage, loaders in given_loaders.items() if loaders is not None}
        self._current = run = Run(fn=fn, module=model, datamodule=datamodule, callbacks=list(self._callbacks),
                                  given_loaders=given, num_sanity_val_batches=self._current.num_sanity_val_batches)
        model.trainer = self
        # `self.log` reaches this run's MetricsRouter, not the Trainer's internals (in barebones mode: an error).
        model._log_router = BarebonesLogRefusal() if self.barebones else self._metrics
        if datamodule is not None:
            datamodule.trainer = self
        hooks = self._hooks
        self._data = DataSource(run, hooks, self._config, self.strategy, self.use_distributed_sampler)
        self._metrics.start_run(run)
        stage_name = fn.value
        if fn == TrainerFn.FITTING:
            self._config.resolve_max_epochs(has_timer(self.callbacks))  # warns once, at the start of fit, as Lightning
        hooks.start(run)
        self.strategy.setup_environment()
        self.strategy._watch_collectives(state)
        try:
            run.callbacks = merge_module_callbacks(
                self._callbacks, hooks.call_as("configure_callbacks", model.configure_callbacks))
            attach_module_logging(run.callbacks, model)
            self.strategy.connect(model)
            hooks.bind()
            check_run(run, hooks, self._config, self._data)
            hooks.prepare_data()
            for logger in self.loggers:
                # Creating the experiment now makes the version directory, so its number is fixed for the run.
                getattr(logger, "experiment", None)
            share_logger_versions(self.loggers, self.strategy)
            self._setup_profiler(model, stage_name)  # after the loggers' versions: its default dirpath is `log_dir`
            hooks.setup(fn)  # a TrainerFn (a str), as Lightning passes it: `stage == "fit"`, `stage.value`
            # Layers made in these hooks start on the strategy's device in the precision's dtype (FSDP: on the meta
            # device when that loses nothing, then sharded).
            self.strategy.build_layers(partial(_configure_model, hooks))
            restore = self._checkpointing.restore_from(run, self._checkpointing.resolve(run, ckpt_path, model_given),
                                                       weights_only, self._config.max_epochs)
            with restore.around_setup():  # module weights and callback states first (FSDP: in `finish`)
                self.strategy.setup(self)  # module to its device (and wrappers); fit: `configure_optimizers`
            if fn == TrainerFn.FITTING:
                hooks.on_fit_start()
            restore.finish()  # then counters, optimizer and precision states
            if self.enable_autolog_hparams:
                log_hyperparameters(self.loggers, model, datamodule)
            requeue = SLURMRequeue.for_trainer(self) if fn == TrainerFn.FITTING else None
            if fn == TrainerFn.FITTING:
                self._signals.install()
                if requeue is not None:
                    requeue.install()
            try:
                with torch.autograd.set_detect_anomaly(self._config.detect_anomaly):
                    results = self._run_stage(fn, return_predictions)
            finally:
                self._signals.uninstall()
                if requeue is not None:
                    requeue.uninstall()
            self.strategy._end_collectives()
            self.strategy.teardown()
            if fn == TrainerFn.FITTING:
                hooks.on_fit_end()
            hooks.teardown(fn)
            for logger in self.loggers:
                logger.finalize("success")
            self.profiler.describe()  # the stage's report, to its file or the log (Lightning: after teardown)
            state.status, state.stage = TrainerStatus.FINISHED, None
        except _TunerExitException:  # a Tuner's finder has tuned: the call ends here, without training (Lightning)
            hooks.teardown(fn)
            self.strategy.teardown()
            state.status, state.stage = TrainerStatus.FINISHED, None
            return None
        except KeyboardInterrupt as error:
            rank_zero_info("\nDetected KeyboardInterrupt, attempting graceful shutdown ...")
            previous_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not cut shutdown
            try:
                self._interrupt(error)
            finally:
                signal.signal(signal.SIGINT, previous_handler)
            sys.exit(1)
        except BaseException as error:
            self.strategy._collectives_failed(error)  # names a raising or diverged rank to every rank
            self._interrupt(error)
            state.stage = None
            killer = getattr(self.strategy.launcher, "kill", None)
            if killer is not None:
                killer()  # the other ranks would wait forever for this one in their next collective
            raise
        if fn == TrainerFn.FITTING and self._signals.received is not None:
            # Stopped by SIGTERM/SIGINT after saving a checkpoint: end the process as the signal asked.
            self._signals.exit()
        return results

    def _setup_profiler(self, model: LightningModule, stage: str) -> None:
        # Lightning names report files by local rank only when several processes run.
        local_rank = self.local_rank if self.world_size > 1 else None
        profiler = self.profiler
        profiler._lightning_module = model
        # `log_dir` is asked only when a recording profiler has no directory of its own (the default one needs none).
        needs_dir = self._hooks.active_profiler is not None and not profiler.dirpath
        profiler.setup(stage=stage, local_rank=local_rank, log_dir=self.log_dir if needs_dir else None)

    def _interrupt(self, error: BaseException) -> None:
        self._state.status = TrainerStatus.INTERRUPTED
        self._hooks.on_exception(error)  # a no-op until the run's hooks are bound
        for logger in self.loggers:
            logger.finalize("failed")
        self.strategy.teardown()

    def _run_stage(self, fn: TrainerFn, return_predictions: bool) -> Any:
        """Build the stage's loop from this run's collaborators and run it."""
        run, state, config, hooks, data = self._current, self._state, self._config, self._hooks, self._data
        if fn == TrainerFn.PREDICTING:
            run.predict_loop = PredictionLoop(run, config, hooks, self.strategy, data, return_predictions)
            return run.predict_loop.run()
        stage = RunningStage.TESTING if fn == TrainerFn.TESTING else RunningStage.VALIDATING
        # validate/test run this loop; fit validates with it.
        loop = EvaluationLoop(run, state, config, hooks, self._metrics, self.strategy, data, stage)
        if fn == TrainerFn.FITTING:
            signal_stop = SignalStop(self._signals, self.strategy, state, self._save_signal_checkpoint)
            run.fit_loop = FitLoop(run, state, config, hooks, self._metrics, self._optimization, self.strategy, data,
                                   loop, signal_stop,
                                   FitLoopStepper(self._optimization, hooks, self._metrics, state))
            if self._fingerprints is not None:  # decided per fit: nothing is checked per step
                with self._fingerprints.recording(self, run):
                    return run.fit_loop.run()
            return run.fit_loop.run()
        run.evaluation_loop = loop
        loop.setup_data()
        if not any(loop.num_batches):
            return []
        return loop.run(loop.num_batches)

    def _save_signal_checkpoint(self) -> str:
        """Write `signal-interrupted.ckpt`, frozen at the loop's position when the signal stopped training."""
        callback = self.checkpoint_callback
        directory = callback.dirpath if callback is not None and callback.dirpath else os.path.join(
            self.default_root_dir, "checkpoints")
        path = os.path.join(directory, "signal-interrupted.ckpt")
        self._checkpointing.freeze_loop_state(self._current)
        self.save_checkpoint(path)
        return path

    @property
    def received_sigterm(self) -> bool:
        return self._signals.received is not None

    def save_checkpoint(self, filepath: str | os.PathLike, weights_only: bool | None = None,
                        storage_options: Any = None) -> None:
        """Write a checkpoint of the current run to `filepath` (atomically)."""
        with self.profiler.profile("save_checkpoint"):
            self._checkpointing.save(self._current, filepath, weights_only, storage_options)

    @contextlib.contextmanager
    def init_module(self, empty_init: bool | None = None) -> Generator[None, None, None]:
        """Build the model in here: its tensors are made on the strategy's device in the precision's dtype
        (e.g. bfloat16 for `"bf16-true"`); `empty_init=True` skips weight initialisation, for weights that a
        checkpoint will overwrite anyway."""
        from fulmen.strategies.strategy import Strategy

        if type(self.strategy).model_sharded_context is not Strategy.model_sharded_context:
            rank_zero_warn(f"`trainer.init_module` cannot build the model sharded with `{type(self.strategy).__name__}`; "
                           "create the layers in `LightningModule.configure_model` instead.",
                           category=PossibleUserWarning)
        with self.strategy.tensor_init_context(empty_init=empty_init):
            yield

    def explain_metrics(self) -> Any:
        """Print (on global rank zero) where every key of `callback_metrics`, `logged_metrics` and
        `progress_bar_metrics` came from; return it as a `fulmen.debug.MetricsExplanation` (its `str()` is the text)."""
        from fulmen.debug.metric_explainer import explain_metrics

        explanation = explain_metrics(self)
        self.print(str(explanation))
        return explanation

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` on global rank zero only, above the progress bar when one is shown."""
        if not self.is_global_zero:
            return
        bar = self.progress_bar_callback
        (bar.print if bar is not None else print)(*args, **kwargs)


def _configure_model(hooks: HookDispatch) -> None:
    hooks.configure_sharded_model()
    hooks.configure_model()
