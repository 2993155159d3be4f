"""How logged values are reduced and published: reductions, batch sizes, value types, logging cadence.

The parity test (tests/integration/test_logging_parity.py) covers keys/values/steps of the common cases;
these cover the rest. Expected numbers were checked against Lightning 2.6.
"""

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from helpers.log_fixtures import RecordingLogger, log_trainer
from helpers.tiny import RandomDataset, TinyModule, make_loader


class _ValueModule(TinyModule):
    """Logs `batch_idx + 1` on epoch with each torch reduction; 20 samples in batches of 8 give sizes 8, 8, 4."""

    def training_step(self, batch, batch_idx):
        value = float(batch_idx) + 1.0
        for name, reduce_fx in (("mean", torch.mean), ("sum", torch.sum), ("max", torch.max), ("min", torch.min),
                                ("avg", "avg"), ("builtin_max", max), ("builtin_min", min), ("builtin_sum", sum)):
            self.log(name, value, on_step=False, on_epoch=True, reduce_fx=reduce_fx)
        return super().training_step(batch, batch_idx)


def test_torch_reduce_functions_with_uneven_last_batch(tmp_path):
    trainer = log_trainer(tmp_path)
    trainer.fit(_ValueModule(), make_loader(20, batch_size=8))
    values = {key: value.item() for key, value in trainer.callback_metrics.items()}
    # mean is weighted by batch size: (1*8 + 2*8 + 3*4) / 20
    assert values == pytest.approx({"mean": 1.8, "avg": 1.8, "sum": 6.0, "max": 3.0, "min": 1.0, "builtin_max": 3.0,
                                    "builtin_min": 1.0, "builtin_sum": 6.0})  # Python's max/min/sum as Lightning


def test_epoch_mean_of_loss_is_weighted_by_batch_size(tmp_path):
    class Module(TinyModule):
        def __init__(self):
            super().__init__()
            self.seen = []

        def training_step(self, batch, batch_idx):
            loss = self.loss(batch)
            self.seen.append((loss.item(), len(batch[0])))
            self.log("loss", loss, on_step=False, on_epoch=True)
            return loss

    module = Module()
    log_trainer(tmp_path).fit(module, make_loader(20, batch_size=8))
    expected = sum(loss * size for loss, size in module.seen) / sum(size for _, size in module.seen)
    assert [size for _, size in module.seen] == [8, 8, 4]
    assert module.trainer.callback_metrics["loss"].item() == pytest.approx(expected, rel=1e-6)


class _DictDataset(RandomDataset):
    def __getitem__(self, index):
        return {"x": self.x[index], "y": self.y[index]}


class _DictModule(TinyModule):
    def training_step(self, batch, batch_idx):
        self.log("m", float(batch_idx) + 1.0, on_step=False, on_epoch=True)
        return F.cross_entropy(self(batch["x"]), batch["y"])


def test_batch_size_is_inferred_from_a_dict_batch(tmp_path):
    trainer = log_trainer(tmp_path)
    trainer.fit(_DictModule(), DataLoader(_DictDataset(20), batch_size=8))
    assert trainer.callback_metrics["m"].item() == pytest.approx(1.8)


def _doubled_targets(items):
    """Collate into `(x, y)` where y has twice x's first dimension, so the batch size is ambiguous."""
    x = torch.stack([item[0] for item in items])
    y = torch.stack([item[1] for item in items])
    return x, torch.cat([y, y])


class _AmbiguousModule(TinyModule):
    def __init__(self, batch_size=None):
        super().__init__()
        self.batch_size = batch_size

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log("m", float(batch_idx) + 1.0, on_step=False, on_epoch=True, batch_size=self.batch_size)
        return F.cross_entropy(self(x), y[: len(x)])


def test_ambiguous_batch_size_warns_and_uses_first_tensor(tmp_path):
    trainer = log_trainer(tmp_path)
    with pytest.warns(UserWarning, match=r"batch size could not be inferred.*batch_size=N"):
        trainer.fit(_AmbiguousModule(), DataLoader(RandomDataset(20), batch_size=8, collate_fn=_doubled_targets))
    assert trainer.callback_metrics["m"].item() == pytest.approx(1.8)


def test_explicit_batch_size_skips_inference(tmp_path, recwarn):
    trainer = log_trainer(tmp_path)
    trainer.fit(_AmbiguousModule(batch_size=2), DataLoader(RandomDataset(20), batch_size=8,
                                                            collate_fn=_doubled_targets))
    assert trainer.callback_metrics["m"].item() == pytest.approx(2.0)
    assert not [w for w in recwarn if "batch size" in str(w.message)]


class _GraphModule(TinyModule):
    def __init__(self, enable_graph):
        super().__init__()
        self.enable_graph = enable_graph
        self.step_values = []

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("g", loss, enable_graph=self.enable_graph)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.step_values.append(self.trainer.callback_metrics["g"])


@pytest.mark.parametrize("enable_graph", [
    False,
    True,
])
def test_callback_metrics_carry_no_graph(tmp_path, enable_graph):
    module = _GraphModule(enable_graph)
    log_trainer(tmp_path, limit_train_batches=2).fit(module, make_loader())
    assert [value.grad_fn for value in module.step_values] == [None, None]
    assert not module.trainer.callback_metrics["g"].requires_grad


class _IndexModule(TinyModule):
    def training_step(self, batch, batch_idx):
        self.log("a", float(batch_idx))
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("every, steps", [(0, []), (1, list(range(10))), (3, [2, 5, 8]), (4, [3, 7])])
def test_log_every_n_steps_controls_step_logging(tmp_path, every, steps):
    logger = RecordingLogger()
    trainer = log_trainer(tmp_path, logger=logger, log_every_n_steps=every, max_epochs=2, limit_train_batches=5)
    trainer.fit(_IndexModule(), make_loader())
    assert [step for step, _ in logger.calls] == steps
    assert all(set(metrics) == {"a", "epoch"} for _, metrics in logger.calls)


def test_log_every_n_steps_zero_still_sends_epoch_values(tmp_path):
    class Module(TinyModule):
        def training_step(self, batch, batch_idx):
            self.log("a", float(batch_idx))
            self.log("e", float(batch_idx), on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

    logger = RecordingLogger()
    trainer = log_trainer(tmp_path, logger=logger, log_every_n_steps=0, max_epochs=2, limit_train_batches=3)
    trainer.fit(Module(), make_loader())
    assert logger.calls == [(2, {"e": 1.0, "epoch": 0.0}), (5, {"e": 1.0, "epoch": 1.0})]


def test_python_numbers_and_bools_become_float_tensors(tmp_path):
    class Module(TinyModule):
        def training_step(self, batch, batch_idx):
            for name, value in (("int", 3), ("float", 2.5), ("bool", True), ("long", torch.tensor(4))):
                self.log(name, value, prog_bar=True)
            return super().training_step(batch, batch_idx)

    trainer = log_trainer(tmp_path, limit_train_batches=2)
    trainer.fit(Module(), make_loader())
    callback = trainer.callback_metrics
    assert all(isinstance(value, torch.Tensor) and value.dtype == torch.float32 for value in callback.values())
    assert {key: value.item() for key, value in callback.items()} == {"int": 3.0, "float": 2.5, "bool": 1.0,
                                                                      "long": 4.0}
    progress_bar = trainer.progress_bar_metrics
    assert progress_bar == {"int": 3.0, "float": 2.5, "bool": 1.0, "long": 4.0}
    assert all(type(value) is float for value in progress_bar.values())


def test_logged_metrics_are_tensors(tmp_path):
    trainer = log_trainer(tmp_path, limit_train_batches=2)
    trainer.fit(_IndexModule(), make_loader())
    assert set(trainer.logged_metrics) == {"a"}
    assert isinstance(trainer.logged_metrics["a"], torch.Tensor)
    assert trainer.logged_metrics["a"].item() == 1.0


class _SumMetricModule(TinyModule):
    """Feeds `10 * epoch + batch_idx + 1` to a torchmetrics SumMetric logged on step and epoch."""

    def __init__(self):
        super().__init__()
        torchmetrics = pytest.importorskip("torchmetrics")
        self.total = torchmetrics.SumMetric()

    def training_step(self, batch, batch_idx):
        self.total(torch.tensor(float(10 * self.current_epoch + batch_idx + 1)))
        self.log("total", self.total, on_step=True, on_epoch=True)
        return super().training_step(batch, batch_idx)


def test_torchmetrics_metric_is_reset_between_epochs(tmp_path):
    logger = RecordingLogger()
    trainer = log_trainer(tmp_path, logger=logger, log_every_n_steps=1, max_epochs=2, limit_train_batches=3)
    trainer.fit(_SumMetricModule(), make_loader())
    # epoch 0 sums 1+2+3; epoch 1 sums only its own batches 11+12+13
    assert logger.values("total_epoch") == [6.0, 36.0]
    assert logger.steps("total_epoch") == [2, 5]
    assert logger.values("total_step") == [1.0, 2.0, 3.0, 11.0, 12.0, 13.0]
    assert trainer.callback_metrics["total"].item() == 36.0


class _TwoLoaderStepEpochModule(TinyModule):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("v", self.loss(batch), on_step=True, on_epoch=True)


def test_step_and_epoch_suffixes_go_before_the_dataloader_suffix(tmp_path):
    """Lightning 2.6.6 names them `v_step/dataloader_idx_1`, not `v/dataloader_idx_1_step` (checked by running it)."""
    trainer = log_trainer(tmp_path, logger=RecordingLogger(), limit_val_batches=None)
    results = trainer.validate(_TwoLoaderStepEpochModule(), [make_loader(16), make_loader(8)], verbose=False)
    assert sorted(trainer.logged_metrics) == ["v_epoch/dataloader_idx_0", "v_epoch/dataloader_idx_1",
                                              "v_step/dataloader_idx_0", "v_step/dataloader_idx_1"]
    assert sorted(trainer.callback_metrics) == ["v/dataloader_idx_0", "v/dataloader_idx_1",
                                                "v_epoch/dataloader_idx_0", "v_epoch/dataloader_idx_1"]
    assert [list(result) for result in results] == [["v_epoch/dataloader_idx_0"], ["v_epoch/dataloader_idx_1"]]


@pytest.mark.distributed
def test_synced_epoch_mean_counts_every_ranks_samples(tmp_path, spawn_env, spawn_time_limit):
    """Rank r logs r with batch_size 1 + 2r: Lightning 2.6.6 syncs the mean to (0*1 + 1*3) / (1 + 3) = 0.75
    (checked by running it with 2 gloo processes), not to the mean of the ranks' means (0.5)."""
    from helpers.explain_modules import RankLoggingModule

    trainer = log_trainer(tmp_path, devices=2, strategy="ddp_spawn")
    trainer.fit(RankLoggingModule(str(tmp_path)), make_loader(64))
    assert trainer.callback_metrics["rank_weighted"].item() == pytest.approx(0.75)
    assert trainer.callback_metrics["rank_mean_epoch"].item() == pytest.approx(0.5)
    assert trainer.callback_metrics["rank_max"].item() == pytest.approx(1.0)


def test_after_a_run_the_metric_dicts_keep_the_users_changes(tmp_path):
    # Lightning refreshes them from the results only while a loop is active.
    class Module(TinyModule):
        def training_step(self, batch, batch_idx):
            self.log("t", 1.0, prog_bar=True)
            return super().training_step(batch, batch_idx)

    trainer = log_trainer(tmp_path)
    trainer.fit(Module(), make_loader(16))
    trainer.callback_metrics.pop("t")
    trainer.logged_metrics["t"] = torch.tensor(99.0)
    assert "t" not in trainer.callback_metrics and trainer.logged_metrics["t"].item() == 99.0
    assert trainer.progress_bar_metrics == {"t": 1.0}


def test_a_logged_step_value_is_the_loggers_step(tmp_path):
    # Lightning: a "step" key sets the step the loggers get (and no "epoch" is added to that row).
    class Module(TinyModule):
        def on_train_epoch_end(self):
            self.log_dict({"step": 42, "train_acc": 0.5})

    logger = RecordingLogger()
    log_trainer(tmp_path, logger=logger).fit(Module(), make_loader(16))
    assert (42, {"train_acc": 0.5}) in logger.calls


def test_log_dict_takes_a_metric_collection(tmp_path):
    torchmetrics = pytest.importorskip("torchmetrics")

    class Module(TinyModule):
        def __init__(self):
            super().__init__()
            self.metrics = torchmetrics.MetricCollection([torchmetrics.MeanMetric(), torchmetrics.SumMetric()],
                                                         prefix="train_")

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.metrics.update(torch.tensor(float(batch_idx)))
            self.log_dict(self.metrics, on_step=False, on_epoch=True)
            return loss

    trainer = log_trainer(tmp_path)
    trainer.fit(Module(), make_loader(16, batch_size=8))
    values = {key: value.item() for key, value in trainer.callback_metrics.items()}
    assert values == pytest.approx({"train_MeanMetric": 0.5, "train_SumMetric": 1.0})


def test_logging_to_a_logger_that_is_not_there_warns(tmp_path):
    class Module(TinyModule):
        def training_step(self, batch, batch_idx):
            self.log("x", 1.0, logger=True)
            return super().training_step(batch, batch_idx)

    with pytest.warns(UserWarning, match=r"You called `self.log\('x', ..., logger=True\)` but have no logger "
                                         r"configured"):
        log_trainer(tmp_path, logger=False).fit(Module(), make_loader(16))


def test_logged_metric_objects_are_reset_when_the_epoch_and_the_evaluation_end(tmp_path):
    torchmetrics = pytest.importorskip("torchmetrics")

    class Module(TinyModule):
        def __init__(self):
            super().__init__()
            self.train_sum, self.val_sum = torchmetrics.SumMetric(), torchmetrics.SumMetric()

        def training_step(self, batch, batch_idx):
            self.train_sum.update(1.0)
            self.log("s", self.train_sum, on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            self.val_sum.update(1.0)
            self.log("v", self.val_sum)

    module = Module()
    trainer = log_trainer(tmp_path, limit_val_batches=2)
    trainer.fit(module, make_loader(16, batch_size=8), make_loader(16, batch_size=8))
    assert trainer.callback_metrics["s"].item() == 2.0 and trainer.callback_metrics["v"].item() == 2.0
    assert not module.train_sum.update_called and not module.val_sum.update_called  # as Lightning: no state left
