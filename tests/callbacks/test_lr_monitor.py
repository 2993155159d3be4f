"""LearningRateMonitor: key names, when it logs, and the values it logs.

Every expected `(step, value)` list below was recorded from Lightning 2.6's LearningRateMonitor with the
same setup: 2 epochs of 3 batches and `log_every_n_steps=1` unless a test says otherwise.
"""

import pytest
import torch
from torch import nn

from fulmen.callbacks import LearningRateMonitor
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.log_fixtures import RecordingLogger, log_trainer
from helpers.tiny import TinyModule, make_loader


class _TwoLayerModule(TinyModule):
    """TinyModule with a `head` layer; `configure` builds the optimizer config from the module."""

    def __init__(self, configure, manual=False):
        super().__init__()
        self.head = nn.Linear(2, 2)
        self.configure = configure
        self.automatic_optimization = not manual

    def forward(self, x):
        return self.head(self.layer(x))

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return self.loss(batch)
        for optimizer in self.optimizers():
            optimizer.zero_grad()
            self.manual_backward(self.loss(batch))
            optimizer.step()

    def configure_optimizers(self):
        return self.configure(self)


def _run(tmp_path, configure, epochs=2, batches=3, every=1, manual=False, **monitor_flags):
    logger = RecordingLogger()
    monitor = LearningRateMonitor(**monitor_flags)
    trainer = log_trainer(tmp_path, logger=logger, callbacks=[monitor], max_epochs=epochs,
                          limit_train_batches=batches, log_every_n_steps=every)
    trainer.fit(_TwoLayerModule(configure, manual=manual), make_loader())
    return logger, monitor, trainer


def _series(logger, key):
    return [(step, pytest.approx(metrics[key])) for step, metrics in logger.calls if key in metrics]


def _sgd(module):
    return torch.optim.SGD(module.parameters(), lr=0.1)


def _step_lr(interval=None, name=None):
    def configure(module):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scheduler = {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)}
        if interval:
            scheduler["interval"] = interval
        if name:
            scheduler["name"] = name
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    return configure


@pytest.mark.parametrize("interval, steps", [
    (None, [0, 0, 1, 2, 3, 3, 4, 5]),  # epoch start and every step, without a scheduler to follow
    ("epoch", [0, 3]),
    ("step", [0, 1, 2, 3, 4, 5]),
])
def test_sgd_without_scheduler(tmp_path, interval, steps):
    logger, monitor, _ = _run(tmp_path, _sgd, logging_interval=interval)
    assert _series(logger, "lr-SGD") == [(step, 0.1) for step in steps]
    assert list(monitor.lrs) == ["lr-SGD"]
    assert monitor.lrs["lr-SGD"] == [0.1] * len(steps)


def test_epoch_scheduler_is_logged_at_epoch_starts(tmp_path):
    logger, monitor, _ = _run(tmp_path, _step_lr())
    assert _series(logger, "lr-SGD") == [(0, 0.1), (3, 0.05)]
    assert monitor.lrs == {"lr-SGD": [0.1, 0.05]}


def test_epoch_scheduler_logged_every_step_when_asked(tmp_path):
    logger, _, _ = _run(tmp_path, _step_lr(), logging_interval="step")
    assert _series(logger, "lr-SGD") == [(0, 0.1), (1, 0.1), (2, 0.1), (3, 0.05), (4, 0.05), (5, 0.05)]


def test_step_scheduler_is_logged_every_step(tmp_path):
    logger, _, _ = _run(tmp_path, _step_lr(interval="step"))
    assert _series(logger, "lr-SGD") == [(step, 0.1 * 0.5 ** step) for step in range(6)]


def test_step_scheduler_logged_at_epoch_starts_when_asked(tmp_path):
    logger, _, _ = _run(tmp_path, _step_lr(interval="step"), logging_interval="epoch")
    assert _series(logger, "lr-SGD") == [(0, 0.1), (3, 0.0125)]


@pytest.mark.parametrize("configure, expected", [
    (_sgd, [(1, 0.1), (3, 0.1), (5, 0.1)]),
    (_step_lr(interval="step"), [(1, 0.05), (3, 0.0125), (5, 0.003125)]),
])
def test_step_logging_follows_log_every_n_steps(tmp_path, configure, expected):
    logger, _, _ = _run(tmp_path, configure, every=2, logging_interval="step" if configure is _sgd else None)
    assert _series(logger, "lr-SGD") == expected


def test_values_equal_the_scheduler_lr_at_that_time(tmp_path):
    seen = []

    class Recorder(LearningRateMonitor):
        def on_train_epoch_start(self, trainer, pl_module):
            super().on_train_epoch_start(trainer, pl_module)
            seen.append(trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0])

    logger = RecordingLogger()
    trainer = log_trainer(tmp_path, logger=logger, callbacks=[Recorder()], max_epochs=3, limit_train_batches=2)
    trainer.fit(_TwoLayerModule(_step_lr()), make_loader())
    assert [value for _, value in _series(logger, "lr-SGD")] == pytest.approx(seen) == [0.1, 0.05, 0.025]


def test_scheduler_config_name_replaces_key(tmp_path):
    logger, monitor, _ = _run(tmp_path, _step_lr(name="my_lr"))
    assert _series(logger, "my_lr") == [(0, 0.1), (3, 0.05)]
    assert not logger.steps("lr-SGD")
    assert list(monitor.lrs) == ["my_lr"]


def _param_groups(names=(None, None)):
    def configure(module):
        groups = [{"params": module.layer.parameters()}, {"params": module.head.parameters(), "lr": 0.01}]
        for group, name in zip(groups, names):
            if name:
                group["name"] = name
        return torch.optim.SGD(groups, lr=0.1)

    return configure


@pytest.mark.parametrize("names, keys", [
    ((None, None), ["lr-SGD/pg1", "lr-SGD/pg2"]),
    (("body", "head"), ["lr-SGD/body", "lr-SGD/head"]),
])
def test_param_groups_get_one_key_each(tmp_path, names, keys):
    logger, _, _ = _run(tmp_path, _param_groups(names), epochs=1, batches=1)
    assert logger.calls == [(0, {keys[0]: 0.1, keys[1]: 0.01})] * 2


def test_single_named_param_group(tmp_path):
    def configure(module):
        return torch.optim.SGD([{"params": module.parameters(), "name": "all"}], lr=0.1)

    logger, _, _ = _run(tmp_path, configure, epochs=1, batches=1)
    assert logger.calls == [(0, {"lr-SGD/all": 0.1})] * 2


def test_duplicate_param_group_names_raise(tmp_path):
    with pytest.raises(MisconfigurationException, match="A single `Optimizer` cannot have multiple parameter groups with "
                                                         "identical `name` values. lr-SGD has duplicated parameter group "
                                                         "names {'a'}: give each param group a unique 'name'"):
        _run(tmp_path, _param_groups(("a", "a")), epochs=1, batches=1)


def test_two_optimizers_of_one_type_in_manual_optimization(tmp_path):
    def configure(module):
        return [torch.optim.Adam(module.layer.parameters(), lr=0.01),
                torch.optim.Adam(module.head.parameters(), lr=0.02)]

    logger, monitor, _ = _run(tmp_path, configure, epochs=1, batches=2, manual=True)
    assert logger.calls == [(0, {"lr-Adam": 0.01, "lr-Adam-1": 0.02})] * 2 + [(1, {"lr-Adam": 0.01,
                                                                                   "lr-Adam-1": 0.02})]
    assert monitor.lrs == {"lr-Adam": [0.01] * 3, "lr-Adam-1": [0.02] * 3}


def test_two_optimizers_of_different_types(tmp_path):
    def configure(module):
        return [torch.optim.Adam(module.layer.parameters(), lr=0.01),
                torch.optim.SGD(module.head.parameters(), lr=0.02)]

    logger, _, _ = _run(tmp_path, configure, epochs=1, batches=1, manual=True)
    assert logger.calls == [(0, {"lr-Adam": 0.01, "lr-SGD": 0.02})] * 2


@pytest.mark.parametrize("optimizer, kwargs, expected", [
    (torch.optim.SGD, dict(momentum=0.9, weight_decay=0.01),
     {"lr-SGD": 0.1, "lr-SGD-momentum": 0.9, "lr-SGD-weight_decay": 0.01}),
    (torch.optim.Adam, dict(betas=(0.8, 0.99), weight_decay=0.02),
     {"lr-Adam": 0.1, "lr-Adam-momentum": 0.8, "lr-Adam-weight_decay": 0.02}),
    (torch.optim.SGD, dict(), {"lr-SGD": 0.1, "lr-SGD-momentum": 0.0, "lr-SGD-weight_decay": 0.0}),
])
def test_log_momentum_and_weight_decay(tmp_path, optimizer, kwargs, expected):
    def configure(module):
        return optimizer(module.parameters(), lr=0.1, **kwargs)

    logger, _, _ = _run(tmp_path, configure, epochs=1, batches=1, log_momentum=True, log_weight_decay=True)
    assert logger.calls == [(0, pytest.approx(expected))] * 2


def test_log_momentum_warns_for_optimizer_without_momentum(tmp_path):
    def configure(module):
        return torch.optim.Adagrad(module.parameters(), lr=0.1)

    with pytest.warns(RuntimeWarning, match="log_momentum=True"):
        logger, _, _ = _run(tmp_path, configure, epochs=1, batches=1, log_momentum=True)
    assert logger.calls[0] == (0, {"lr-Adagrad": 0.1, "lr-Adagrad-momentum": 0.0})


def test_learning_rate_is_in_callback_metrics(tmp_path):
    _, _, trainer = _run(tmp_path, _step_lr(interval="step"))
    assert isinstance(trainer.callback_metrics["lr-SGD"], torch.Tensor)
    assert trainer.callback_metrics["lr-SGD"].item() == pytest.approx(0.003125)


def test_no_logger_raises_at_fit(tmp_path):
    trainer = log_trainer(tmp_path, callbacks=[LearningRateMonitor()], limit_train_batches=1)
    with pytest.raises(MisconfigurationException, match="Cannot use `LearningRateMonitor` callback with `Trainer` that "
                                                         "has no logger. Remove `logger=False`"):
        trainer.fit(_TwoLayerModule(_sgd), make_loader())


def test_invalid_logging_interval_raises():
    with pytest.raises(MisconfigurationException, match="logging_interval='batch'.*'step', 'epoch' or None"):
        LearningRateMonitor(logging_interval="batch")


# -- last_momentum_values / last_weight_decay_values ---------------------------------------------------------


def _adam_groups_and_sgd(module):
    adam = torch.optim.Adam([{"params": module.layer.parameters()}, {"params": module.head.parameters(),
                                                                      "weight_decay": 0.5}], lr=0.1, betas=(0.8, 0.9))
    sgd = torch.optim.SGD(module.parameters(), lr=0.2, momentum=0.7, weight_decay=0.01)
    return [adam, sgd], [torch.optim.lr_scheduler.StepLR(adam, 1, gamma=0.5)]


# Lightning 2.6.6 with the same optimizers (manual optimization, 2 epochs of 2 batches).
NAMES = ("lr-Adam/pg1", "lr-Adam/pg2", "lr-SGD")


@pytest.mark.parametrize(("flags", "momentum", "weight_decay"), [
    ({}, None, None),
    (dict(log_momentum=True, log_weight_decay=True), [0.8, 0.8, 0.7], [0, 0.5, 0.01]),
    (dict(log_momentum=True, logging_interval="epoch"), [0.8, 0.8, 0.7], None),
])
def test_last_momentum_and_weight_decay_values(tmp_path, flags, momentum, weight_decay):
    monitor = LearningRateMonitor(**flags)
    assert (monitor.last_momentum_values, monitor.last_weight_decay_values) == ({}, {})
    _, monitor, _ = _run(tmp_path, _adam_groups_and_sgd, batches=2, manual=True, **flags)
    assert monitor.last_momentum_values == dict(zip([f"{n}-momentum" for n in NAMES], momentum or [None] * 3))
    assert monitor.last_weight_decay_values == dict(zip([f"{n}-weight_decay" for n in NAMES],
                                                        weight_decay or [None] * 3))


def test_a_param_group_added_during_fit_carries_the_history_over_to_pg1(tmp_path):
    # Lightning 2.6.6 on the same run: {'lr-SGD/pg1': [0.1, 0.05, 0.025], 'lr-SGD/pg2': [0.1, 0.05]}.
    import fulmen as L

    class AddGroup(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                trainer.optimizers[0].add_param_group({"params": list(pl_module.head.parameters()), "lr": 0.1})

    def configure(module):
        optimizer = torch.optim.SGD(module.layer.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)]

    monitor = LearningRateMonitor()
    trainer = log_trainer(tmp_path, logger=RecordingLogger(), callbacks=[AddGroup(), monitor], max_epochs=3,
                          limit_train_batches=2)
    trainer.fit(_TwoLayerModule(configure), make_loader())
    assert monitor.lrs == {"lr-SGD/pg1": pytest.approx([0.1, 0.05, 0.025]), "lr-SGD/pg2": pytest.approx([0.1, 0.05])}


def test_log_momentum_without_momentum_warns_as_lightning(tmp_path):
    with pytest.warns(RuntimeWarning, match="You have set log_momentum=True, but some optimizers do not have momentum. "
                                            "This will log a value 0 for the momentum."):
        _run(tmp_path, lambda module: torch.optim.Adagrad(module.parameters(), lr=0.1), epochs=1, batches=1,
             log_momentum=True)
