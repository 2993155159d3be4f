"""Every parameter of `Trainer(...)`, `LightningModule.log` and `log_dict` is read: each has a probe that passes
a non-default value and checks its effect, or the clear error of a flag fulmen cannot honour yet. The tables'
keys must equal the signatures, so a new parameter without a probe fails `test_every_parameter_has_a_probe`."""

import os

import pytest
import torch

import fulmen as L
from fulmen.callbacks import ModelCheckpoint, ModelSummary
from fulmen.checkpoint_io import CheckpointIO
from fulmen.loggers import CSVLogger
from fulmen.plugins import TorchSyncBatchNorm
from fulmen.strategies import DDPStrategy
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.signature_probes import (
    CountingLoaders,
    HparamsModule,
    SeenModes,
    StopRequest,
    fit,
    parameters_of,
    raises,
    trainer_only,
)
from helpers.tiny import TinyModule, make_loader

# -- Trainer ------------------------------------------------------------------------------------------


def _weights_change(tmp_path, **flags):
    model = TinyModule()
    before = model.layer.weight.detach().clone()
    fit(tmp_path, model, **flags)
    return (model.layer.weight.detach() - before).abs().max().item()


def _validation_inference_mode(tmp_path, flag):
    """Whether `trainer.validate` ran the steps in inference mode (fit's own validation never does, as Lightning)."""
    module = SeenModes()
    trainer_only(inference_mode=flag, default_root_dir=tmp_path).validate(module, make_loader(16), verbose=False)
    return module.seen["inference"]


def _deterministic(tmp_path):
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        trainer_only(deterministic=True)
        return torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(previous)


def _benchmark(tmp_path):
    previous = torch.backends.cudnn.benchmark
    try:
        trainer_only(accelerator="cpu", benchmark=not previous)
        return torch.backends.cudnn.benchmark is (not previous)
    finally:
        torch.backends.cudnn.benchmark = previous


def _nonfinite_skip(tmp_path):
    """on_nonfinite="skip": a NaN loss leaves the weights as they were."""
    from helpers.nonfinite_modules import NaNAt

    model = NaNAt(steps={0, 1})
    trainer = fit(tmp_path, model, train=make_loader(16), on_nonfinite="skip")
    return trainer.nonfinite_guard.skipped_steps == 2 and torch.equal(model.weights_after[1], model.weights_before[0])


def _autolog_hparams(tmp_path):
    def hparams_written(enabled):
        logger = CSVLogger(tmp_path / str(enabled))
        fit(tmp_path, HparamsModule(), logger=logger, enable_autolog_hparams=enabled)
        return logger.experiment.hparams

    return hparams_written(True) == {"width": 3} and hparams_written(False) == {}


TRAINER = {
    "accelerator": lambda tmp: raises(ValueError, "not a known accelerator", lambda: trainer_only(accelerator="tpux")),
    "strategy": lambda tmp: isinstance(trainer_only(strategy="ddp_spawn", devices=2).strategy, DDPStrategy),
    "devices": lambda tmp: trainer_only(devices=3, accelerator="cpu").num_devices == 3,
    "num_nodes": lambda tmp: trainer_only(num_nodes=2, strategy="ddp").num_nodes == 2,
    "precision": lambda tmp: trainer_only(precision="bf16-mixed").precision == "bf16-mixed",
    "logger": lambda tmp: trainer_only(logger=CSVLogger(tmp)).logger.save_dir == str(tmp),
    "callbacks": lambda tmp: any(type(cb) is ModelSummary and cb._max_depth == 3
                                 for cb in trainer_only(callbacks=[ModelSummary(max_depth=3)]).callbacks),
    "fast_dev_run": lambda tmp: fit(tmp, fast_dev_run=1, max_epochs=5).global_step == 1,
    "max_epochs": lambda tmp: fit(tmp, max_epochs=2).current_epoch == 2,
    "min_epochs": lambda tmp: fit(tmp, StopRequest(), min_epochs=2, max_epochs=5).current_epoch == 2,
    "min_steps": lambda tmp: fit(tmp, StopRequest(), min_steps=3, max_epochs=5).global_step == 3,
    "max_steps": lambda tmp: fit(tmp, max_steps=1, max_epochs=5).global_step == 1,
    "max_time": lambda tmp: fit(tmp, max_time={"seconds": 0}, max_epochs=5).global_step <= 1,
    "limit_train_batches": lambda tmp: fit(tmp, limit_train_batches=1, max_epochs=2).global_step == 2,
    "limit_val_batches": lambda tmp: fit(tmp, val=make_loader(16), limit_val_batches=1,
                                         num_sanity_val_steps=0).num_val_batches == [1],
    "limit_test_batches": lambda tmp: (lambda t: t.test(TinyModule(), make_loader(16), verbose=False)
                                       or t.num_test_batches == [1])(trainer_only(limit_test_batches=1)),
    "limit_predict_batches": lambda tmp: len(trainer_only(limit_predict_batches=1).predict(
        TinyModule(), make_loader(16, targets=False))) == 1,
    "overfit_batches": lambda tmp: fit(tmp, overfit_batches=1).num_training_batches == 1,
    "val_check_interval": lambda tmp: (lambda m: fit(tmp, m, val=make_loader(16), val_check_interval=1,
                                                     num_sanity_val_steps=0) and m.calls["validation_step"] == 4)(
        TinyModule()),
    "check_val_every_n_epoch": lambda tmp: (lambda m: fit(tmp, m, val=make_loader(16), check_val_every_n_epoch=2,
                                                          num_sanity_val_steps=0) and m.calls["validation_step"] == 0)(
        TinyModule()),
    "num_sanity_val_steps": lambda tmp: (lambda m: fit(tmp, m, val=make_loader(16), num_sanity_val_steps=1)
                                         and m.calls["validation_step"] == 3)(TinyModule()),
    "log_every_n_steps": lambda tmp: trainer_only(log_every_n_steps=7).log_every_n_steps == 7,
    "enable_checkpointing": lambda tmp: trainer_only(enable_checkpointing=False).checkpoint_callback is None
    and isinstance(trainer_only().checkpoint_callback, ModelCheckpoint),
    "enable_progress_bar": lambda tmp: L.Trainer(logger=False, enable_progress_bar=False).progress_bar_callback is None
    and L.Trainer(logger=False).progress_bar_callback is not None,
    "enable_model_summary": lambda tmp: not any(isinstance(cb, ModelSummary) for cb in L.Trainer(
        logger=False, enable_model_summary=False).callbacks),
    "accumulate_grad_batches": lambda tmp: fit(tmp, accumulate_grad_batches=2).global_step == 1,
    "gradient_clip_val": lambda tmp: _weights_change(tmp, gradient_clip_val=1e-6) <= 0.1 * 1e-6 * 2 + 1e-9
    < _weights_change(tmp),
    # Clipping each element to 1e-6 moves weights more than clipping the whole gradient's norm to 1e-6.
    "gradient_clip_algorithm": lambda tmp: _weights_change(tmp, gradient_clip_val=1e-6) < _weights_change(
        tmp, gradient_clip_val=1e-6, gradient_clip_algorithm="value") <= 2.5e-7
    and raises(MisconfigurationException, "gradient_clip_algorithm", lambda: trainer_only(gradient_clip_algorithm="clip")),
    "deterministic": _deterministic,
    "benchmark": _benchmark,
    "inference_mode": lambda tmp: _validation_inference_mode(tmp, True) is True
    and _validation_inference_mode(tmp, False) is False,
    "use_distributed_sampler": lambda tmp: trainer_only(use_distributed_sampler=False).use_distributed_sampler is False,
    "profiler": lambda tmp: len(fit(tmp, profiler="simple").profiler.recorded_durations["run_training_batch"]) == 2
    and raises(MisconfigurationException, "profiler", lambda: trainer_only(profiler="fancy")),
    "detect_anomaly": lambda tmp: (lambda m: fit(tmp, m, detect_anomaly=True) and m.seen["anomaly"] is True)(
        SeenModes()),
    "barebones": lambda tmp: (lambda t: t.progress_bar_callback is None and t.logger is None
                              and t.checkpoint_callback is None)(L.Trainer(barebones=True)),
    "plugins": lambda tmp: (lambda io: trainer_only(plugins=[io]).strategy.checkpoint_io is io)(CheckpointIO()),
    "sync_batchnorm": lambda tmp: isinstance(trainer_only(strategy="ddp", devices=2, sync_batchnorm=True)
                                             .strategy._layer_sync, TorchSyncBatchNorm),
    "reload_dataloaders_every_n_epochs": lambda tmp: (lambda m: quiet_fit_module(tmp, m) == 2)(CountingLoaders()),
    "default_root_dir": lambda tmp: trainer_only(default_root_dir=tmp).default_root_dir == str(tmp),
    "enable_autolog_hparams": _autolog_hparams,
    "model_registry": lambda tmp: raises(NotImplementedError, "model_registry",
                                         lambda: trainer_only(model_registry="registry")),
    "trace_hooks": lambda tmp: (fit(tmp, trace_hooks=tmp / "trace.json").hook_tracer.records[-1]["hook"] == "teardown"
                                and (tmp / "trace.json").exists()),
    "on_nonfinite": lambda tmp: _nonfinite_skip(tmp) and raises(ValueError, "on_nonfinite='never'",
                                                                  lambda: trainer_only(on_nonfinite="never")),
    "fingerprint": lambda tmp: fit(tmp, fingerprint=tmp / "fp") and (tmp / "fp" / "fingerprints.bin").stat().st_size > 0
    and raises(TypeError, "fingerprint", lambda: trainer_only(fingerprint=3)),
}


def quiet_fit_module(tmp_path, module):
    trainer = trainer_only(default_root_dir=tmp_path, max_epochs=2, reload_dataloaders_every_n_epochs=1,
                           enable_checkpointing=False)
    trainer.fit(module)
    return module.train_loader_calls


# -- self.log / self.log_dict ---------------------------------------------------------------------------


class Logs(TinyModule):
    """Logs `name` = `value(batch_idx)` from `hook` with `options`, through `log` or `log_dict`."""

    def __init__(self, options, value=lambda idx: 1.0, hook="training_step", use_dict=False, name="x"):
        super().__init__()
        self.options, self.value, self.hook, self.use_dict, self.name = options, value, hook, use_dict, name

    def _log(self, batch_idx):
        value = self.value(batch_idx)
        if self.use_dict:
            self.log_dict({self.name: value}, **self.options)
        else:
            self.log(self.name, value, **self.options)

    def training_step(self, batch, batch_idx):
        if self.hook == "training_step":
            self._log(batch_idx)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        if self.hook == "validation_step":
            self._log(batch_idx)


def run_log(tmp_path, use_dict, options, val=False, reduce_calls=None, **kwargs):
    module = Logs(options, use_dict=use_dict, hook="validation_step" if val else "training_step", **kwargs)
    trainer = trainer_only(default_root_dir=tmp_path, max_epochs=1, enable_checkpointing=False,
                           num_sanity_val_steps=0)
    if reduce_calls is not None:
        reduce = trainer.strategy.reduce
        trainer.strategy.reduce = lambda value, group=None, reduce_op="mean": (
            reduce_calls.append(group) or reduce(value, group, reduce_op))
    trainer.fit(module, make_loader(16), [make_loader(16), make_loader(16)] if val else None)
    return trainer


def _metric_attribute(tmp_path, use_dict):
    torchmetrics = pytest.importorskip("torchmetrics")

    class HiddenMetric(Logs):
        def __init__(self, metric_attribute):
            super().__init__({"metric_attribute": metric_attribute} if metric_attribute else {})
            self.store = {"metric": torchmetrics.SumMetric()}  # not a submodule
            self.value = lambda idx: self.store["metric"](1.0) and self.store["metric"]

    def go(metric_attribute):
        trainer = trainer_only(default_root_dir=tmp_path, max_epochs=1, enable_checkpointing=False)
        trainer.fit(HiddenMetric(metric_attribute), make_loader(16))
        return trainer

    assert "x" in go("store").callback_metrics
    return raises(MisconfigurationException, "Could not find the `LightningModule` attribute", lambda: go(None))


def log_probes(use_dict):
    def run(tmp, options, **kwargs):
        return run_log(tmp, use_dict, options, **kwargs)

    table = {
        "prog_bar": lambda tmp: "x" in run(tmp, {"prog_bar": True}).progress_bar_metrics,
        "logger": lambda tmp: (lambda t: "x" in t.callback_metrics and "x" not in t.logged_metrics)(
            run(tmp, {"logger": False})),
        "on_step": lambda tmp: "x_step" in run(tmp, {"on_step": True, "on_epoch": True}).logged_metrics,
        "on_epoch": lambda tmp: (lambda t: "x_epoch" in t.logged_metrics and "x_step" in t.logged_metrics)(
            run(tmp, {"on_epoch": True})),
        "reduce_fx": lambda tmp: run(tmp, {"on_epoch": True, "on_step": False, "reduce_fx": "max"},
                                     value=float).callback_metrics["x"].item() == 1.0,
        "enable_graph": lambda tmp: run(tmp, {"on_epoch": True, "on_step": False, "enable_graph": True},
                                        value=lambda idx: torch.ones((), requires_grad=True) * idx
                                        ).callback_metrics["x"].requires_grad,
        "sync_dist": lambda tmp: (lambda calls: run(tmp, {"sync_dist": True}, reduce_calls=calls) and calls)([]),
        "sync_dist_group": lambda tmp: (lambda calls: run(tmp, {"sync_dist": True, "sync_dist_group": "g"},
                                                          reduce_calls=calls) and set(calls) == {"g"})([]),
        # Two val loaders writing one unsuffixed key: Lightning's MisconfigurationException.
        "add_dataloader_idx": lambda tmp: raises(MisconfigurationException, "add_dataloader_idx=False",
                                                 lambda: run(tmp, {"add_dataloader_idx": False}, val=True)),
        "batch_size": lambda tmp: run(tmp, {"on_epoch": True, "on_step": False, "batch_size": None}, value=float)
        .callback_metrics["x"].item() == 0.5 and abs(run_weighted(tmp, use_dict) - 2 / 3) < 1e-6,
        "rank_zero_only": lambda tmp: (lambda calls: run(tmp, {"sync_dist": True, "rank_zero_only": True},
                                                         reduce_calls=calls) and calls == [])([]),
    }
    if use_dict:
        table["dictionary"] = lambda tmp: run(tmp, {}, value=lambda idx: 3.0).callback_metrics["x"].item() == 3.0
    else:
        table["name"] = lambda tmp: "renamed" in run(tmp, {}, name="renamed").callback_metrics
        table["value"] = lambda tmp: run(tmp, {}, value=lambda idx: 3.0).callback_metrics["x"].item() == 3.0
        table["metric_attribute"] = lambda tmp: _metric_attribute(tmp, use_dict)
    return table


def run_weighted(tmp_path, use_dict):
    """Batch sizes 1 and 2 for values 0 and 1: the epoch mean is weighted, 2/3."""
    class Weighted(Logs):
        def _log(self, batch_idx):
            options = {"on_epoch": True, "on_step": False, "batch_size": batch_idx + 1}
            if self.use_dict:
                self.log_dict({"x": float(batch_idx)}, **options)
            else:
                self.log("x", float(batch_idx), **options)

    trainer = trainer_only(default_root_dir=tmp_path, max_epochs=1, enable_checkpointing=False)
    trainer.fit(Weighted({}, use_dict=use_dict), make_loader(16))
    return trainer.callback_metrics["x"].item()


TABLES = {"Trainer": (L.Trainer, TRAINER), "log": (L.LightningModule.log, log_probes(False)),
          "log_dict": (L.LightningModule.log_dict, log_probes(True))}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_parameter_has_a_probe(name):
    callable_, table = TABLES[name]
    assert sorted(table) == sorted(parameters_of(callable_))


@pytest.mark.parametrize(("name", "parameter"), [(name, parameter) for name, (_, table) in sorted(TABLES.items())
                                                 for parameter in sorted(table)])
def test_parameter_is_read(name, parameter, tmp_path, monkeypatch):
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    assert TABLES[name][1][parameter](tmp_path)
