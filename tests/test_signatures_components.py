"""Every constructor parameter of the public callbacks, loggers and strategies is read: each has a probe that
passes a non-default value and checks its effect (or the clear error it raises). A table's keys must equal the
signature, so a new parameter without a probe fails `test_every_parameter_has_a_probe`."""

import logging
import os
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from fulmen.callbacks import (
    EarlyStopping,
    EarlyStoppingReason,
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
    TQDMProgressBar,
)
from fulmen.checkpoint_io import CheckpointIO
from fulmen.loggers import CSVLogger, TensorBoardLogger
from fulmen.plugins.environments import LightningEnvironment
from fulmen.plugins.precision import HalfPrecision, MixedPrecision, Precision
from fulmen.strategies import DDPStrategy, SingleDeviceStrategy
from fulmen.strategies.launchers import MultiprocessingLauncher
from fulmen.trainer.state import TrainerFn
from helpers import fsdp_probes, logger_probes, mp_probes
from helpers.averaging_probes import EMA, SWA, WEIGHT_AVERAGING
from helpers.callback_probes import LAMBDA_CALLBACK, ON_EXCEPTION_CHECKPOINT, PREDICTION_WRITER, TIMER
from helpers.schedcb_probes import (
    BACKBONE_FINETUNING,
    GRADIENT_ACCUMULATION_SCHEDULER,
    MODEL_PRUNING,
    SPIKE_DETECTION,
)
from helpers.monitor_probes import DEVICE_STATS_MONITOR, THROUGHPUT_MONITOR
from helpers.tuner_probes import BATCH_SIZE_FINDER, LEARNING_RATE_FINDER
from helpers.progress_probes import RICH_MODEL_SUMMARY, RICH_PROGRESS_BAR, TQDM_LEAVE, TQDM_PROCESS_POSITION
from helpers.strategy_probes import ASYNC_CHECKPOINT_IO, PARALLEL_STRATEGY, SLURM_ENVIRONMENT, STRATEGY
from helpers.signature_probes import ScoreModule, fit, parameters_of, raises, trainer_only
from helpers.tiny import TinyModule


def files(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# -- ModelCheckpoint (probes only: the callback's file belongs to another change) ---------------------------


def ckpt_fit(tmp, module=None, max_epochs=2, **options):
    options.setdefault("dirpath", tmp / "ckpts")
    callback = ModelCheckpoint(**options)
    fit(tmp, module or ScoreModule([3.0, 1.0, 2.0]), enable_checkpointing=True, callbacks=[callback],
        max_epochs=max_epochs)
    return callback, files(options["dirpath"])


class Failing(TinyModule):
    def training_step(self, batch, batch_idx):
        if self.global_step == 1:
            raise RuntimeError("stop here")
        return super().training_step(batch, batch_idx)


def _save_on_exception(tmp):
    callback = ModelCheckpoint(dirpath=tmp / "ckpts", save_on_exception=True)
    with pytest.raises(RuntimeError, match="stop here"):
        fit(tmp, Failing(), enable_checkpointing=True, callbacks=[callback])
    return files(tmp / "ckpts") == ["epoch=0-step=1.ckpt"]  # written only by the exception save


def _enable_version_counter(tmp):
    _, first = ckpt_fit(tmp, filename="same", max_epochs=1)
    _, again = ckpt_fit(tmp, filename="same", max_epochs=1)
    _, kept = ckpt_fit(tmp, filename="same", max_epochs=1, enable_version_counter=False)
    return first == ["same.ckpt"] and again == ["same-v1.ckpt", "same.ckpt"] and kept == again


MODEL_CHECKPOINT = {
    "dirpath": lambda tmp: ckpt_fit(tmp, dirpath=tmp / "elsewhere")[1] == ["epoch=1-step=4.ckpt"],
    "filename": lambda tmp: ckpt_fit(tmp, filename="model-{epoch}")[1] == ["model-epoch=1.ckpt"],
    "monitor": lambda tmp: ckpt_fit(tmp, monitor="score", filename="{epoch}")[1] == ["epoch=1.ckpt"],
    "verbose": lambda tmp: _logs_contain(lambda: ckpt_fit(tmp, monitor="score", verbose=True), "saved model to"),
    "save_last": lambda tmp: "last.ckpt" in ckpt_fit(tmp, save_last=True)[1],
    "save_top_k": lambda tmp: len(ckpt_fit(tmp, save_top_k=-1)[1]) == 2,
    "save_on_exception": _save_on_exception,
    "save_weights_only": lambda tmp: "optimizer_states" not in torch.load(
        ckpt_fit(tmp, save_weights_only=True)[0].best_model_path, weights_only=False),
    "mode": lambda tmp: ckpt_fit(tmp, monitor="score", mode="max", filename="{epoch}")[1] == ["epoch=0.ckpt"],
    "auto_insert_metric_name": lambda tmp: ckpt_fit(tmp, filename="{epoch}", auto_insert_metric_name=False)[1]
    == ["1.ckpt"],
    "every_n_train_steps": lambda tmp: len(ckpt_fit(tmp, every_n_train_steps=1, save_top_k=-1)[1]) == 4,
    "train_time_interval": lambda tmp: len(ckpt_fit(tmp, train_time_interval=timedelta(0), save_top_k=-1)[1]) >= 3,
    "every_n_epochs": lambda tmp: ckpt_fit(tmp, every_n_epochs=2, max_epochs=1)[1] == [],
    "save_on_train_epoch_end": lambda tmp: ckpt_fit(tmp, save_on_train_epoch_end=False)[1] == [],  # no validation
    "enable_version_counter": _enable_version_counter,
}


def _logs_contain(run, text):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("fulmen")
    logger.addHandler(handler)
    try:
        run()
    finally:
        logger.removeHandler(handler)
    return any(text in record.getMessage() for record in records)


# -- EarlyStopping --------------------------------------------------------------------------------------------


def stop_fit(tmp, scores, **options):
    options.setdefault("monitor", "score")
    callback = EarlyStopping(**options)
    trainer = fit(tmp, ScoreModule(scores), callbacks=[callback], max_epochs=len(scores))
    return callback, trainer.current_epoch


def _log_rank_zero_only(tmp):
    """On rank 1 of 2, a verbose reason is logged (with its rank) unless `log_rank_zero_only`."""
    def reasons(rank_zero_only):
        callback = EarlyStopping(monitor="score", verbose=True, check_on_train_epoch_end=True,
                                 log_rank_zero_only=rank_zero_only)
        trainer = SimpleNamespace(
            world_size=2, global_rank=1, callback_metrics={"score": torch.tensor(1.0)}, should_stop=False,
            current_epoch=0, sanity_checking=False, fast_dev_run=False, state=SimpleNamespace(fn=TrainerFn.FITTING),
            strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision))
        return _logs_contain(lambda: callback.on_train_epoch_end(trainer, None), "[rank: 1] Metric score improved")

    return reasons(False) and not reasons(True)


EARLY_STOPPING = {
    "monitor": lambda tmp: raises(RuntimeError, "'missing'", lambda: stop_fit(tmp, [1.0], monitor="missing")),
    "min_delta": lambda tmp: stop_fit(tmp, [1.0, 0.95, 0.9, 0.85], patience=1, min_delta=0.1)[1] == 2
    and stop_fit(tmp, [1.0, 0.95, 0.9, 0.85], patience=1)[1] == 4,
    "patience": lambda tmp: stop_fit(tmp, [1.0] * 6, patience=1)[1] == 2,
    "verbose": lambda tmp: _logs_contain(lambda: stop_fit(tmp, [1.0], verbose=True), "Metric score improved"),
    "mode": lambda tmp: stop_fit(tmp, [1.0, 2.0, 3.0, 4.0], patience=1, mode="max")[1] == 4,
    "strict": lambda tmp: stop_fit(tmp, [1.0, 1.0], monitor="missing", strict=False)[1] == 2,
    "check_finite": lambda tmp: stop_fit(tmp, [float("nan")] * 3, check_finite=False)[1] == 3
    and stop_fit(tmp, [float("nan")] * 3)[0].stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC,
    "stopping_threshold": lambda tmp: stop_fit(tmp, [2.0, 0.4, 0.3], stopping_threshold=0.5)[1] == 2,
    "divergence_threshold": lambda tmp: stop_fit(tmp, [2.0, 9.0, 1.0], divergence_threshold=5.0)[1] == 2,
    "check_on_train_epoch_end": lambda tmp: stop_fit(tmp, [1.0] * 4, patience=1, check_on_train_epoch_end=False)[1]
    == 4,
    "log_rank_zero_only": _log_rank_zero_only,
}


# -- LearningRateMonitor, TQDMProgressBar, ModelSummary ------------------------------------------------------


class MomentumModule(TinyModule):
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)


def lr_fit(tmp, **options):
    callback = LearningRateMonitor(**options)
    fit(tmp, MomentumModule(), callbacks=[callback], max_epochs=2, logger=CSVLogger(tmp), log_every_n_steps=1)
    return callback.lrs


LR_MONITOR = {
    "logging_interval": lambda tmp: len(lr_fit(tmp, logging_interval="step")["lr-SGD"]) == 4
    and len(lr_fit(tmp, logging_interval="epoch")["lr-SGD"]) == 2,
    "log_momentum": lambda tmp: "lr-SGD-momentum" in fit_lr_metrics(tmp, log_momentum=True),
    "log_weight_decay": lambda tmp: "lr-SGD-weight_decay" in fit_lr_metrics(tmp, log_weight_decay=True),
}


def fit_lr_metrics(tmp, **options):
    trainer = fit(tmp, MomentumModule(), callbacks=[LearningRateMonitor(**options)], logger=CSVLogger(tmp))
    return trainer.callback_metrics


PROGRESS_BAR = {
    "refresh_rate": lambda tmp, mp: not TQDMProgressBar(refresh_rate=0).is_enabled,
    "process_position": lambda tmp, mp: TQDM_PROCESS_POSITION(tmp),
    "leave": lambda tmp, mp: TQDM_LEAVE(tmp),
}

MODEL_SUMMARY = {
    "max_depth": lambda tmp: _logs_contain(lambda: fit(tmp, callbacks=[ModelSummary(max_depth=1)]), "layer")
    and not _logs_contain(lambda: fit(tmp, callbacks=[ModelSummary(max_depth=0)]), "layer"),
    "summarize_kwargs": lambda tmp: raises(TypeError, "unexpected keyword", lambda: ModelSummary(header_style="x")),
}


# -- loggers -----------------------------------------------------------------------------------------------


def tensorboard_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return accumulator.Tags()["scalars"]


def tb_logged(tmp, **options):
    logger = TensorBoardLogger(tmp, **options)
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    return logger


TENSORBOARD = {
    "save_dir": lambda tmp: TensorBoardLogger(tmp / "sd").log_dir == str(tmp / "sd" / "lightning_logs" / "version_0"),
    "name": lambda tmp: TensorBoardLogger(tmp, name="exp").log_dir == str(tmp / "exp" / "version_0"),
    "version": lambda tmp: TensorBoardLogger(tmp, version="v").log_dir == str(tmp / "lightning_logs" / "v"),
    "log_graph": lambda tmp: _log_graph_warns(tmp),
    "default_hp_metric": lambda tmp: "hp_metric" in tensorboard_tags(tb_logged(tmp / "a").log_dir)
    and "hp_metric" not in tensorboard_tags(tb_logged(tmp / "b", default_hp_metric=False).log_dir),
    "prefix": lambda tmp: "p-x" in tensorboard_tags(tb_logged(tmp, prefix="p").log_dir),
    "sub_dir": lambda tmp: TensorBoardLogger(tmp, sub_dir="sub").log_dir.endswith(os.path.join("version_0", "sub")),
    "kwargs": lambda tmp: all(name.endswith(".sfx") for name in files(tb_logged(tmp, filename_suffix=".sfx").log_dir)
                              if name.startswith("events")),
}


def _log_graph_warns(tmp):
    with pytest.warns(UserWarning, match="example_input_array"):
        TensorBoardLogger(tmp, log_graph=True).log_graph(TinyModule())
    return True


def csv_logged(tmp, **options):
    logger = CSVLogger(tmp, **options)
    logger.log_metrics({"x": 1.0}, step=0)
    return logger


CSV = {
    "save_dir": lambda tmp: CSVLogger(tmp / "sd").log_dir == str(tmp / "sd" / "lightning_logs" / "version_0"),
    "name": lambda tmp: CSVLogger(tmp, name="exp").log_dir == str(tmp / "exp" / "version_0"),
    "version": lambda tmp: CSVLogger(tmp, version=5).log_dir == str(tmp / "lightning_logs" / "version_5"),
    "prefix": lambda tmp: (lambda logger: logger.save() or "p-x" in open(
        os.path.join(logger.log_dir, "metrics.csv")).readline())(csv_logged(tmp, prefix="p")),
    "flush_logs_every_n_steps": lambda tmp: os.path.exists(os.path.join(
        csv_logged(tmp, flush_logs_every_n_steps=1).log_dir, "metrics.csv")),
}


def mlflow_logger(tmp, **options):
    pytest.importorskip("mlflow")
    from fulmen.loggers.mlflow import MLFlowLogger

    options.setdefault("save_dir", str(tmp / "mlruns"))
    return MLFlowLogger(**options)


def mlflow_run(logger):
    return logger.experiment.get_run(logger.run_id)


def _log_model(tmp):
    logger = mlflow_logger(tmp, log_model=True)
    assert logger.run_id  # the Trainer creates the run before any checkpoint is saved
    checkpoint = tmp / "best.ckpt"
    checkpoint.write_bytes(b"weights")
    logger.after_save_checkpoint(SimpleNamespace(best_model_path=str(checkpoint), last_model_path=""))
    logger.finalize("success")
    return [item.path for item in logger.experiment.list_artifacts(logger.run_id, "model/checkpoints")] == [
        "model/checkpoints/best.ckpt"]


def _synchronous(tmp):
    logger = mlflow_logger(tmp, synchronous=True)
    calls = []
    log_batch = logger.experiment.log_batch
    logger._client.log_batch = lambda *args, **kwargs: calls.append(kwargs) or log_batch(*args, **kwargs)
    logger.log_metrics({"x": 1.0}, step=0)
    return calls[0]["synchronous"] is True


MLFLOW = {
    "experiment_name": lambda tmp: (lambda lg: lg.experiment.get_experiment(lg.experiment_id).name == "exp")(
        mlflow_logger(tmp, experiment_name="exp")),
    "run_name": lambda tmp: mlflow_run(mlflow_logger(tmp, run_name="r")).data.tags["mlflow.runName"] == "r",
    "tracking_uri": lambda tmp: mlflow_logger(tmp, tracking_uri=f"file:{tmp / 'uri'}").save_dir == str(tmp / "uri"),
    "tags": lambda tmp: mlflow_run(mlflow_logger(tmp, tags={"team": "a"})).data.tags["team"] == "a",
    "save_dir": lambda tmp: mlflow_logger(tmp, save_dir=str(tmp / "other")).save_dir == str(tmp / "other"),
    "log_model": _log_model,
    "prefix": lambda tmp: (lambda lg: lg.log_metrics({"x": 1.0}, step=0) or "p-x" in mlflow_run(lg).data.metrics)(
        mlflow_logger(tmp, prefix="p")),
    "artifact_location": lambda tmp: (lambda lg: lg.experiment.get_experiment(lg.experiment_id).artifact_location
                                      .endswith("artifacts_here"))(
        mlflow_logger(tmp, artifact_location=f"file:{tmp / 'artifacts_here'}")),
    "run_id": lambda tmp: (lambda first: mlflow_logger(tmp, run_id=first.run_id).experiment_id == first.experiment_id)(
        mlflow_logger(tmp, experiment_name="other")),
    "synchronous": _synchronous,
}


# -- strategies ----------------------------------------------------------------------------------------------


class MarkingIO(CheckpointIO):
    def __init__(self):
        super().__init__()
        self.saved = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.saved.append(path)
        super().save_checkpoint(checkpoint, path, storage_options)


def _checkpoint_io(tmp, make_strategy):
    io = MarkingIO()
    trainer = fit(tmp, strategy=make_strategy(io))
    trainer.save_checkpoint(tmp / "x.ckpt")
    return io.saved == [tmp / "x.ckpt"]


SINGLE_DEVICE = {
    "device": lambda tmp: SingleDeviceStrategy(device="meta").root_device == torch.device("meta"),
    "accelerator": lambda tmp: raises(NotImplementedError, "no Accelerator", lambda: SingleDeviceStrategy(
        accelerator="cuda")),
    "checkpoint_io": lambda tmp: _checkpoint_io(tmp, lambda io: SingleDeviceStrategy(checkpoint_io=io)),
    "precision_plugin": lambda tmp: (lambda plugin: trainer_only(strategy=SingleDeviceStrategy(
        precision_plugin=plugin)).precision_plugin is plugin)(Precision()),
}

DDP = {
    "accelerator": lambda tmp: raises(NotImplementedError, "no Accelerator", lambda: DDPStrategy(accelerator="cpu")),
    "parallel_devices": lambda tmp: DDPStrategy(parallel_devices=[torch.device("cpu")] * 3).world_size == 3,
    "cluster_environment": lambda tmp: (lambda env: trainer_only(strategy=DDPStrategy(cluster_environment=env),
                                                                 devices=2).strategy.cluster_environment is env)(
        LightningEnvironment()),
    "checkpoint_io": lambda tmp: DDPStrategy(checkpoint_io=MarkingIO()).checkpoint_io.saved == [],
    "precision_plugin": lambda tmp: (lambda plugin: trainer_only(strategy=DDPStrategy(precision_plugin=plugin),
                                                                 devices=2).precision_plugin is plugin)(Precision()),
    # Their effect on training is checked in a real 2-process job: tests/strategies/test_ddp_features.py.
    "ddp_comm_state": lambda tmp: raises(ValueError, "ddp_comm_state", lambda: DDPStrategy(ddp_comm_state=object())),
    "ddp_comm_hook": lambda tmp: raises(TypeError, "ddp_comm_hook", lambda: DDPStrategy(ddp_comm_hook=1)),
    "ddp_comm_wrapper": lambda tmp: raises(ValueError, "ddp_comm_wrapper", lambda: DDPStrategy(
        ddp_comm_wrapper=default_hooks.fp16_compress_wrapper)),
    "model_averaging_period": lambda tmp: raises(ValueError, "PostLocalSGDState", lambda: DDPStrategy(
        ddp_comm_hook=default_hooks.allreduce_hook, model_averaging_period=2)),
    "process_group_backend": lambda tmp: DDPStrategy(process_group_backend="mpi").process_group_backend == "mpi",
    "timeout": lambda tmp: DDPStrategy(timeout=timedelta(seconds=5))._timeout == timedelta(seconds=5),
    "start_method": lambda tmp: (lambda launcher: isinstance(launcher, MultiprocessingLauncher)
                                 and launcher.start_method == "fork")(DDPStrategy(start_method="fork").launcher),
    "find_unused_parameters": lambda tmp: DDPStrategy(find_unused_parameters=True)._ddp_kwargs[
        "find_unused_parameters"] is True,
    "static_graph": lambda tmp: DDPStrategy(static_graph=True)._ddp_kwargs["static_graph"] is True,
    "num_nodes": lambda tmp: DDPStrategy(num_nodes=2).world_size == 2,
    "divergence_timeout": lambda tmp: raises(ValueError, "divergence_timeout", lambda: DDPStrategy(
        divergence_timeout=-1)),
    "ddp_kwargs": lambda tmp: DDPStrategy(bucket_cap_mb=5)._ddp_kwargs["bucket_cap_mb"] == 5
    and raises(TypeError, "bucket_cap", lambda: DDPStrategy(bucket_cap=5)),
}


# -- plugins at Lightning's paths (Precision, DoublePrecision, TorchCheckpointIO and the accelerators take none) --


def _trained_dtype(tmp, plugin):
    module = TinyModule()
    fit(tmp, module, plugins=[plugin])
    return module.layer.weight.dtype


MIXED_PRECISION = {
    "precision": lambda tmp: fit(tmp, plugins=[MixedPrecision(precision="bf16-mixed", device="cpu")]).precision
    == "bf16-mixed",
    "device": lambda tmp: raises(RuntimeError, "'meta'", lambda: MixedPrecision("bf16-mixed", device="meta")
                                 .forward_context()),  # autocast is asked for the device given
    "scaler": lambda tmp: (lambda scaler: MixedPrecision("16-mixed", "cpu", scaler=scaler).scaler is scaler)(
        torch.amp.GradScaler("cpu")),
}
HALF_PRECISION = {"precision": lambda tmp: _trained_dtype(tmp, HalfPrecision(precision="bf16-true")) == torch.bfloat16}
LIGHTNING_ENVIRONMENT = {
    "num_nodes": lambda tmp: LightningEnvironment(num_nodes=2).world_size() == 2,
    "devices_per_node": lambda tmp: LightningEnvironment(devices_per_node=3).world_size() == 3,
}


TABLES = {
    "MixedPrecision": (MixedPrecision, MIXED_PRECISION), "HalfPrecision": (HalfPrecision, HALF_PRECISION),
    "LightningEnvironment": (LightningEnvironment, LIGHTNING_ENVIRONMENT),
    "TorchElasticEnvironment": ("fulmen.plugins.environments.TorchElasticEnvironment", {}),
    "SLURMEnvironment": ("fulmen.plugins.environments.SLURMEnvironment", SLURM_ENVIRONMENT),
    "ModelCheckpoint": (ModelCheckpoint, MODEL_CHECKPOINT), "EarlyStopping": (EarlyStopping, EARLY_STOPPING),
    "LearningRateMonitor": (LearningRateMonitor, LR_MONITOR), "TQDMProgressBar": (TQDMProgressBar, PROGRESS_BAR),
    "ModelSummary": (ModelSummary, MODEL_SUMMARY), "TensorBoardLogger": (TensorBoardLogger, TENSORBOARD),
    "CSVLogger": (CSVLogger, CSV), "DummyLogger": ("fulmen.loggers.logger.DummyLogger", {}), "MLFlowLogger": ("fulmen.loggers.mlflow.MLFlowLogger", MLFLOW),
    "SingleDeviceStrategy": (SingleDeviceStrategy, SINGLE_DEVICE), "DDPStrategy": (DDPStrategy, DDP),
    "LambdaCallback": ("fulmen.callbacks.LambdaCallback", LAMBDA_CALLBACK),
    "Timer": ("fulmen.callbacks.Timer", TIMER),
    "OnExceptionCheckpoint": ("fulmen.callbacks.OnExceptionCheckpoint", ON_EXCEPTION_CHECKPOINT),
    "BasePredictionWriter": ("fulmen.callbacks.BasePredictionWriter", PREDICTION_WRITER),
    "WandbLogger": ("fulmen.loggers.WandbLogger", logger_probes.WANDB),
    "CometLogger": ("fulmen.loggers.CometLogger", logger_probes.COMET),
    "LitLogger": ("fulmen.loggers.LitLogger", logger_probes.LITLOGGER),
    "NeptuneLogger": ("fulmen.loggers.neptune.NeptuneLogger", logger_probes.NEPTUNE),
    "GradientAccumulationScheduler": ("fulmen.callbacks.GradientAccumulationScheduler",
                                      GRADIENT_ACCUMULATION_SCHEDULER),
    "BaseFinetuning": ("fulmen.callbacks.BaseFinetuning", {}),
    "BackboneFinetuning": ("fulmen.callbacks.BackboneFinetuning", BACKBONE_FINETUNING),
    "ModelPruning": ("fulmen.callbacks.ModelPruning", MODEL_PRUNING),
    "SpikeDetection": ("fulmen.callbacks.SpikeDetection", SPIKE_DETECTION),
    "DeviceStatsMonitor": ("fulmen.callbacks.DeviceStatsMonitor", DEVICE_STATS_MONITOR),
    "ThroughputMonitor": ("fulmen.callbacks.ThroughputMonitor", THROUGHPUT_MONITOR),
    "RichProgressBar": ("fulmen.callbacks.RichProgressBar", RICH_PROGRESS_BAR),
    "RichModelSummary": ("fulmen.callbacks.RichModelSummary", RICH_MODEL_SUMMARY),
    "StochasticWeightAveraging": ("fulmen.callbacks.StochasticWeightAveraging", SWA),
    "WeightAveraging": ("fulmen.callbacks.WeightAveraging", WEIGHT_AVERAGING),
    "EMAWeightAveraging": ("fulmen.callbacks.EMAWeightAveraging", EMA),
    "Strategy": ("fulmen.strategies.Strategy", STRATEGY),
    "ParallelStrategy": ("fulmen.strategies.ParallelStrategy", PARALLEL_STRATEGY),
    "AsyncCheckpointIO": ("fulmen.plugins.io.AsyncCheckpointIO", ASYNC_CHECKPOINT_IO),
    "KubeflowEnvironment": ("fulmen.plugins.environments.KubeflowEnvironment", {}),
    "LSFEnvironment": ("fulmen.plugins.environments.LSFEnvironment", {}),
    "MPIEnvironment": ("fulmen.plugins.environments.MPIEnvironment", {}),
    "LearningRateFinder": ("fulmen.callbacks.LearningRateFinder", LEARNING_RATE_FINDER),
    "BatchSizeFinder": ("fulmen.callbacks.BatchSizeFinder", BATCH_SIZE_FINDER),
    "FSDPStrategy": ("fulmen.strategies.FSDPStrategy", fsdp_probes.FSDP_STRATEGY),
    "ModelParallelStrategy": ("fulmen.strategies.ModelParallelStrategy", mp_probes.MODEL_PARALLEL_STRATEGY),
}


def _resolve(target):
    if isinstance(target, str):
        module, _, name = target.rpartition(".")
        return getattr(__import__(module, fromlist=[name]), name)
    return target


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_parameter_has_a_probe(name):
    target, table = TABLES[name]
    assert sorted(table) == sorted(parameters_of(_resolve(target)))


@pytest.mark.parametrize(("name", "parameter"), [(name, parameter) for name, (_, table) in sorted(TABLES.items())
                                                 for parameter in sorted(table)])
def test_parameter_is_read(name, parameter, tmp_path, monkeypatch, caplog):
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    probe = TABLES[name][1][parameter]
    fixtures = {"TQDMProgressBar": (monkeypatch,), "Timer": (monkeypatch, caplog)}.get(name, ())
    assert probe(tmp_path, *fixtures)
