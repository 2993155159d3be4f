"""MetricsRouter built without a Trainer: state, strategy, a loggers list and `log_every_n_steps`."""

import pytest

from fulmen.results.metrics_router import MetricsRouter
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.trainer.run import Run
from fulmen.trainer.state import TrainerState
from helpers.module_fixtures import LinearModule


class ListLogger:
    def __init__(self):
        self.records = []

    def log_metrics(self, metrics, step):
        self.records.append((step, dict(metrics)))

    def save(self):
        pass


def _log(router, module, name, value):
    router.log(module, name, value, prog_bar=False, logger=True, on_step=None, on_epoch=None, reduce_fx="mean",
               enable_graph=False, sync_dist=False, sync_dist_group=None, add_dataloader_idx=True, batch_size=1,
               metric_attribute=None, rank_zero_only=False)


@pytest.mark.parametrize("should_stop", [False, True])
def test_step_values_reach_the_loggers_every_n_steps(should_stop):
    logger, state = ListLogger(), TrainerState(current_epoch=4)
    router = MetricsRouter(state, SingleDeviceStrategy(), [logger], log_every_n_steps=2)
    router.start_run(Run(hook_name="training_step"))
    router.start_train_epoch()
    module = LinearModule()
    _log(router, module, "loss", 1.5)
    state.should_stop = should_stop
    router.train_step_done(0, accumulating=False)  # batch 1 of every 2: only a stopping run logs it
    _log(router, module, "loss", 2.5)
    router.train_step_done(1, accumulating=False)
    expected = [(1, {"loss": 2.5, "epoch": 4})]
    if should_stop:
        expected.insert(0, (0, {"loss": 1.5, "epoch": 4}))
    assert logger.records == expected


def test_loggers_list_can_be_replaced():
    router = MetricsRouter(TrainerState(), SingleDeviceStrategy(), [], log_every_n_steps=1)
    logger = ListLogger()
    router.loggers = [logger]
    router.send_to_loggers({"x": 1.0}, step=3, add_epoch=False)
    assert logger.records == [(3, {"x": 1.0})]
