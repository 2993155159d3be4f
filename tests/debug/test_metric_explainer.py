"""`trainer.explain_metrics()`: snapshot tests of the explanation after small fit/validate runs.

Values are masked in the snapshots (`= <v>`) and checked separately with tolerances; line numbers of call
sites are masked too and checked in one test. The dict keys each logged name produces were checked against
Lightning 2.6.6 running the same modules (`callback_metrics`, `logged_metrics`, `progress_bar_metrics`).
"""

import inspect

import pytest
import torch

import fulmen as L
from fulmen.debug import MetricsExplanation
from helpers.explain_modules import masked, snapshot
from helpers.log_fixtures import RecordingLogger, log_trainer
from helpers.tiny import TinyModule, make_loader


class _FitModule(TinyModule):
    """Trains on 20 samples in batches of 8, 8, 4 and validates on two dataloaders of 16 and 8 samples."""

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True)
        self.log("weighted", float(batch_idx), on_step=False, on_epoch=True, batch_size=len(batch[0]))
        self.log("peak", float(batch_idx), on_step=False, on_epoch=True, reduce_fx="max")
        self.log("seen", float(len(batch[0])), on_step=False, on_epoch=True, reduce_fx=torch.sum)
        self.log("hidden", loss, logger=False)
        self.log_dict({"twice": 2 * loss, "thrice": 3 * loss}, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("val_loss", self.loss(batch), prog_bar=True)


FIT_SNAPSHOT = snapshot("""
    Metrics explained: rank 0 of 1, epoch 1, global step 3

    train_loss  logged in `training_step` by _FitModule.training_step (test_metric_explainer.py:<line>)
        call       self.log('train_loss', ..., prog_bar=True, on_epoch=True)
        when       on_step=True (default in training_step), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 20 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      on_step and on_epoch: 'train_loss_step' (step value), 'train_loss_epoch' (epoch value), and 'train_loss' for callbacks (the newer of the two)
        keys       train_loss_step  = <v>  -> logger (RecordingLogger, every 1 training steps (log_every_n_steps)), progress bar, callbacks
                   train_loss_epoch = <v>  -> logger (RecordingLogger, at epoch end), progress bar, callbacks
                   train_loss       = <v>  -> callbacks

    weighted  logged in `training_step` by _FitModule.training_step (test_metric_explainer.py:<line>)
        call       self.log('weighted', ..., on_step=False, on_epoch=True, batch_size=8)
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch_size passed to self.log, 8 in its first call; total weight 20 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      'weighted' (epoch value)
        keys       weighted = <v>  -> logger (RecordingLogger, at epoch end), callbacks

    peak  logged in `training_step` by _FitModule.training_step (test_metric_explainer.py:<line>)
        call       self.log('peak', ..., on_step=False, on_epoch=True, reduce_fx='max')
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = maximum of the values logged this epoch (batch size not used)
        sync       not synced (sync_dist=False; 1 process)
        names      'peak' (epoch value)
        keys       peak = <v>  -> logger (RecordingLogger, at epoch end), callbacks

    seen  logged in `training_step` by _FitModule.training_step (test_metric_explainer.py:<line>)
        call       self.log('seen', ..., on_step=False, on_epoch=True, reduce_fx=torch.sum)
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = sum of the values logged this epoch (batch size not used)
        sync       not synced (sync_dist=False; 1 process)
        names      'seen' (epoch value)
        keys       seen = <v>  -> logger (RecordingLogger, at epoch end), callbacks

    hidden  logged in `training_step` by _FitModule.training_step (test_metric_explainer.py:<line>)
        call       self.log('hidden', ..., logger=False)
        when       on_step=True (default in training_step), on_epoch=False (default in training_step)
        reduction  none: step values only (on_epoch=False)
        sync       not synced (sync_dist=False; 1 process)
        names      'hidden' (step value)
        keys       hidden = <v>  -> callbacks
        note       logger=False: never sent to the loggers (not in trainer.logged_metrics)

    twice  logged in `training_step` by _FitModule.training_step (test_metric_explainer.py:<line>)
        call       self.log_dict({..., 'twice': ...}, on_step=False, on_epoch=True)
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 20 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      'twice' (epoch value)
        keys       twice = <v>  -> logger (RecordingLogger, at epoch end), callbacks

    thrice  logged in `training_step` by _FitModule.training_step (test_metric_explainer.py:<line>)
        call       self.log_dict({..., 'thrice': ...}, on_step=False, on_epoch=True)
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 20 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      'thrice' (epoch value)
        keys       thrice = <v>  -> logger (RecordingLogger, at epoch end), callbacks

    val_loss/dataloader_idx_0  logged in `validation_step` by _FitModule.validation_step (test_metric_explainer.py:<line>)
        call       self.log('val_loss', ..., prog_bar=True)
        when       on_step=False (default in validation_step), on_epoch=True (default in validation_step)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 16 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      'val_loss/dataloader_idx_0' (epoch value); '/dataloader_idx_0' added: logged while dataloader 0 ran
        keys       val_loss/dataloader_idx_0 = <v>  -> logger (RecordingLogger, at epoch end), progress bar, callbacks

    val_loss/dataloader_idx_1  logged in `validation_step` by _FitModule.validation_step (test_metric_explainer.py:<line>)
        call       self.log('val_loss', ..., prog_bar=True)
        when       on_step=False (default in validation_step), on_epoch=True (default in validation_step)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 8 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      'val_loss/dataloader_idx_1' (epoch value); '/dataloader_idx_1' added: logged while dataloader 1 ran
        keys       val_loss/dataloader_idx_1 = <v>  -> logger (RecordingLogger, at epoch end), progress bar, callbacks
""")


def _fit(tmp_path, module=None, **flags):
    module = _FitModule() if module is None else module
    options = dict(logger=RecordingLogger(), log_every_n_steps=1, limit_val_batches=None, num_sanity_val_steps=2)
    options.update(flags)
    trainer = log_trainer(tmp_path, **options)
    trainer.fit(module, make_loader(20, batch_size=8), [make_loader(16), make_loader(8, seed=7)])
    return trainer


def test_fit_explanation_snapshot(tmp_path, capsys):
    trainer = _fit(tmp_path)
    capsys.readouterr()
    explanation = trainer.explain_metrics()
    assert isinstance(explanation, MetricsExplanation)
    assert masked(str(explanation)) == FIT_SNAPSHOT
    # Printed on rank zero: the same text.
    assert capsys.readouterr().out == str(explanation) + "\n"


def test_fit_explanation_values(tmp_path):
    trainer = _fit(tmp_path)
    explanation = trainer.explain_metrics()
    values = {produced.key: produced.value for entry in explanation.entries for produced in entry.produced}
    metrics = trainer.callback_metrics
    # batch_idx 0, 1, 2 weighted by batch sizes 8, 8, 4; its maximum; the sum of the batch sizes.
    assert values["weighted"] == pytest.approx((0 * 8 + 1 * 8 + 2 * 4) / 20)
    assert values["peak"] == pytest.approx(2.0)
    assert values["seen"] == pytest.approx(20.0)
    for key in ("train_loss", "train_loss_epoch", "twice", "val_loss/dataloader_idx_1"):
        assert values[key] == pytest.approx(metrics[key].item(), rel=1e-6)
    assert values["train_loss_step"] == pytest.approx(trainer.logged_metrics["train_loss_step"].item(), rel=1e-6)
    assert values["twice"] == pytest.approx(2 * values["train_loss_epoch"], rel=1e-5)
    # Every key of the three dicts is explained by exactly one logged name.
    published = {*trainer.callback_metrics, *trainer.logged_metrics, *trainer.progress_bar_metrics}
    assert set(values) == published and not explanation.unexplained


def test_call_site_is_the_line_that_called_self_log(tmp_path):
    explanation = _fit(tmp_path).explain_metrics()
    lines, first = inspect.getsourcelines(_FitModule.training_step)
    expected = {name: first + i for i, line in enumerate(lines) for name in ("train_loss", "thrice")
                if f'"{name}"' in line}
    for name, line in expected.items():
        path, recorded_line, function = explanation[name].call_site
        assert (path, recorded_line, function) == (__file__, line, "_FitModule.training_step")
    assert explanation["train_loss_epoch"] is explanation["train_loss"]
    with pytest.raises(KeyError, match="'nope' was not produced by any `self.log` call"):
        explanation["nope"]


class _EvalModule(TinyModule):
    """Validates on two dataloaders: per-step and epoch values, a torchmetrics metric, values from an epoch hook
    and from a callback."""

    def __init__(self):
        super().__init__()
        import torchmetrics

        self.mean_loss = torchmetrics.MeanMetric()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        loss = self.loss(batch)
        self.log("step_loss", loss, on_step=True, reduce_fx="sum")
        if dataloader_idx == 0:
            self.mean_loss(loss)
            self.log("metric_loss", self.mean_loss, on_epoch=True)

    def on_validation_epoch_end(self):
        self.log("end_value", 5.0, sync_dist=True)


class _LoggingCallback(L.Callback):
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        pl_module.log(f"from_callback_{dataloader_idx}", float(batch_idx), prog_bar=True, logger=False,
                      add_dataloader_idx=False)


VALIDATE_SNAPSHOT = snapshot("""
    Metrics explained: rank 0 of 1, epoch 0, global step 0

    step_loss/dataloader_idx_0  logged in `validation_step` by _EvalModule.validation_step (test_metric_explainer.py:<line>)
        call       self.log('step_loss', ..., on_step=True, reduce_fx='sum')
        when       on_step=True (given), on_epoch=True (default in validation_step)
        reduction  epoch value = sum of the values logged this epoch (batch size not used)
        sync       not synced (sync_dist=False; 1 process)
        names      on_step and on_epoch: 'step_loss_step/dataloader_idx_0' (step value), 'step_loss_epoch/dataloader_idx_0' (epoch value), and 'step_loss/dataloader_idx_0' for callbacks (the newer of the two); '/dataloader_idx_0' added: logged while dataloader 0 ran
        keys       step_loss_step/dataloader_idx_0  = <v>  -> logger (CSVLogger, after every batch)
                   step_loss_epoch/dataloader_idx_0 = <v>  -> logger (CSVLogger, at epoch end), callbacks
                   step_loss/dataloader_idx_0       = <v>  -> callbacks

    metric_loss/dataloader_idx_0  logged in `validation_step` by _EvalModule.validation_step (test_metric_explainer.py:<line>)
        call       self.log('metric_loss', ..., on_epoch=True)
        when       on_step=False (default in validation_step), on_epoch=True (given)
        reduction  torchmetrics MeanMetric: step value = its forward() on the batch, epoch value = its compute() over the epoch's updates (reduce_fx and batch_size are not used)
        sync       by the metric itself (sync_on_compute=True, dist_sync_on_step=False); sync_dist does not apply
        names      'metric_loss/dataloader_idx_0' (epoch value); '/dataloader_idx_0' added: logged while dataloader 0 ran
        keys       metric_loss/dataloader_idx_0 = <v>  -> logger (CSVLogger, at epoch end), callbacks

    from_callback_0  logged in `on_validation_batch_end` by _LoggingCallback.on_validation_batch_end (test_metric_explainer.py:<line>)
        call       self.log('from_callback_0', ..., prog_bar=True, logger=False, add_dataloader_idx=False)
        when       on_step=False (default in on_validation_batch_end), on_epoch=True (default in on_validation_batch_end)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 16 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      'from_callback_0' (epoch value); logged while dataloader 0 ran, no suffix added (add_dataloader_idx=False)
        keys       from_callback_0 = <v>  -> progress bar, callbacks
        note       logger=False: never sent to the loggers (not in trainer.logged_metrics)

    step_loss/dataloader_idx_1  logged in `validation_step` by _EvalModule.validation_step (test_metric_explainer.py:<line>)
        call       self.log('step_loss', ..., on_step=True, reduce_fx='sum')
        when       on_step=True (given), on_epoch=True (default in validation_step)
        reduction  epoch value = sum of the values logged this epoch (batch size not used)
        sync       not synced (sync_dist=False; 1 process)
        names      on_step and on_epoch: 'step_loss_step/dataloader_idx_1' (step value), 'step_loss_epoch/dataloader_idx_1' (epoch value), and 'step_loss/dataloader_idx_1' for callbacks (the newer of the two); '/dataloader_idx_1' added: logged while dataloader 1 ran
        keys       step_loss_step/dataloader_idx_1  = <v>  -> logger (CSVLogger, after every batch)
                   step_loss_epoch/dataloader_idx_1 = <v>  -> logger (CSVLogger, at epoch end), callbacks
                   step_loss/dataloader_idx_1       = <v>  -> callbacks

    from_callback_1  logged in `on_validation_batch_end` by _LoggingCallback.on_validation_batch_end (test_metric_explainer.py:<line>)
        call       self.log('from_callback_1', ..., prog_bar=True, logger=False, add_dataloader_idx=False)
        when       on_step=False (default in on_validation_batch_end), on_epoch=True (default in on_validation_batch_end)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 8 this epoch)
        sync       not synced (sync_dist=False; 1 process)
        names      'from_callback_1' (epoch value); logged while dataloader 1 ran, no suffix added (add_dataloader_idx=False)
        keys       from_callback_1 = <v>  -> progress bar, callbacks
        note       logger=False: never sent to the loggers (not in trainer.logged_metrics)

    end_value  logged in `on_validation_epoch_end` by _EvalModule.on_validation_epoch_end (test_metric_explainer.py:<line>)
        call       self.log('end_value', ..., sync_dist=True)
        when       on_step=False (default in on_validation_epoch_end), on_epoch=True (default in on_validation_epoch_end)
        reduction  none: logged once per epoch, the epoch value is the logged value (several calls: their mean)
        sync       sync_dist=True, but only 1 process: nothing to reduce
        names      'end_value' (epoch value)
        keys       end_value = <v>  -> logger (CSVLogger, at epoch end), callbacks
""")


def test_validate_explanation_snapshot(tmp_path):
    from fulmen.loggers import CSVLogger

    pytest.importorskip("torchmetrics")
    trainer = log_trainer(tmp_path, logger=CSVLogger(tmp_path), callbacks=[_LoggingCallback()],
                          limit_val_batches=None)
    trainer.validate(_EvalModule(), [make_loader(16), make_loader(8, seed=7)], verbose=False)
    explanation = trainer.explain_metrics()
    assert masked(str(explanation)) == VALIDATE_SNAPSHOT
    values = {produced.key: produced.value for entry in explanation.entries for produced in entry.produced}
    assert values["end_value"] == pytest.approx(5.0)
    # Batch indices 0, 1 (dataloader 0) and 0 (dataloader 1), batches of 8.
    assert values["from_callback_0"] == pytest.approx(0.5) and values["from_callback_1"] == pytest.approx(0.0)
    key = "metric_loss/dataloader_idx_0"
    assert values[key] == pytest.approx(trainer.callback_metrics[key].item(), rel=1e-6)
    assert values["step_loss_epoch/dataloader_idx_1"] == pytest.approx(values["step_loss_step/dataloader_idx_1"])


class _FirstEpochOnly(TinyModule):
    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        if self.current_epoch == 0:
            self.log("early", loss, on_step=False, on_epoch=True)
        self.log("loss", loss, on_step=False, on_epoch=True)
        return loss


def test_key_logged_in_an_earlier_epoch_is_still_explained(tmp_path):
    trainer = log_trainer(tmp_path, max_epochs=2)
    trainer.fit(_FirstEpochOnly(), make_loader(16))
    explanation = trainer.explain_metrics()
    assert explanation["early"].notes == [
        "not logged since the epoch (or evaluation run) it was last logged in; the values are from then"]
    assert explanation["loss"].notes == []
    assert "total weight 16 this epoch" in explanation["loss"].reduction
    assert "total weight" not in explanation["early"].reduction


def test_explanation_during_a_run_and_a_new_run_forgets_old_keys(tmp_path):
    seen = []

    class Explaining(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 1:
                seen.append(trainer.explain_metrics())

    trainer = log_trainer(tmp_path, callbacks=[Explaining()], limit_val_batches=None)
    trainer.fit(_FitModule(), make_loader(20, batch_size=8), make_loader(8))
    # Mid-epoch: step values only; epoch values are not published yet.
    assert [produced.key for produced in seen[0]["train_loss"].produced] == ["train_loss_step", "train_loss"]
    assert seen[0]["weighted"].produced == []
    assert "keys       (none published yet)" in str(seen[0])
    trainer.validate(_EvalModule(), make_loader(8), verbose=False)
    assert [entry.name for entry in trainer.explain_metrics().entries] == [
        "step_loss", "metric_loss", "end_value"]


def test_nothing_logged(tmp_path):
    trainer = log_trainer(tmp_path)
    assert str(trainer.explain_metrics()).endswith("\nNothing has been logged in this run.")  # before any run
    trainer.fit(TinyModule(), make_loader(16))
    assert str(trainer.explain_metrics()) == ("Metrics explained: rank 0 of 1, epoch 1, global step 2\n"
                                             "Nothing has been logged in this run.")


def test_keys_without_a_record_are_listed(tmp_path):
    """A checkpoint taken in `on_train_epoch_end` restores `callback_metrics` that no `self.log` call of the
    resumed run produced."""

    class Save(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.save_checkpoint(tmp_path / "end.ckpt")

    log_trainer(tmp_path, callbacks=[Save()]).fit(_FirstEpochOnly(), make_loader(16))
    resumed = log_trainer(tmp_path)
    resumed.fit(_FirstEpochOnly(), make_loader(16), ckpt_path=tmp_path / "end.ckpt")
    explanation = resumed.explain_metrics()
    assert explanation.entries == []
    assert set(explanation.unexplained) == {"early", "loss"}
    assert masked(str(explanation)) == snapshot("""
        Metrics explained: rank 0 of 1, epoch 1, global step 2

        Keys with no `self.log` record in this process (restored from a checkpoint or handed back by another process):
            early = <v>
            loss = <v>
    """)


def test_import_fulmen_does_not_import_the_explainer():
    import subprocess
    import sys

    code = ("import sys, fulmen; fulmen.Trainer; import fulmen.results.metrics_router; "
            "print([name for name in sys.modules if name.startswith('fulmen.debug')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
