"""What differs between automatic and manual optimization in `configure_optimizers`, and the no-optimizer placeholder.

Checked against Lightning 2.6.6: manual optimization accepts a ReduceLROnPlateau without a monitor and
schedulers that are not torch's (the user steps them); automatic optimization refuses several optimizers
and a `training_step(..., optimizer_idx)` with a RuntimeError before any batch runs; the placeholder used
when `configure_optimizers` returns None has no parameter groups.
"""

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from core.test_optimizer_setup import Configurable, _fit, _sgd
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import RecordingCallback


class CustomScheduler:
    """Not a torch scheduler: it has a state dict but no LRScheduler base class."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.steps = 0

    def step(self):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


@pytest.mark.parametrize("build", [
    lambda m: ([(o := _sgd(m))], [ReduceLROnPlateau(o)]),
    lambda m: {"optimizer": (o := _sgd(m)), "lr_scheduler": ReduceLROnPlateau(o)},
    lambda m: {"optimizer": (o := _sgd(m)), "lr_scheduler": {"scheduler": ReduceLROnPlateau(o)}},
])
def test_manual_optimization_accepts_plateau_without_monitor(tmp_path, build):
    module = Configurable(build, manual=True)
    trainer = _fit(tmp_path, module)
    assert trainer.global_step == 2
    assert isinstance(module.seen["schedulers"], ReduceLROnPlateau)


def test_manual_optimization_ignores_plateau_keys_with_a_warning(tmp_path):
    def build(m):
        optimizer = _sgd(m)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": ReduceLROnPlateau(optimizer), "monitor": "x"}}

    with pytest.warns(RuntimeWarning, match=r"\['monitor'\].*manual optimization"):
        trainer = _fit(tmp_path, Configurable(build, manual=True))
    assert trainer.lr_scheduler_configs[0].monitor is None


def test_manual_optimization_accepts_a_scheduler_that_is_not_torchs(tmp_path):
    module = Configurable(lambda m: ([(o := _sgd(m))], [CustomScheduler(o)]), manual=True)
    _fit(tmp_path, module)
    assert isinstance(module.seen["schedulers"], CustomScheduler)
    assert module.seen["schedulers"].steps == 0  # manual optimization never steps schedulers itself


def test_automatic_optimization_still_refuses_those(tmp_path):
    with pytest.raises(MisconfigurationException, match="ReduceLROnPlateau"):
        _fit(tmp_path, Configurable(lambda m: ([(o := _sgd(m))], [ReduceLROnPlateau(o)])))
    with pytest.raises(MisconfigurationException, match="CustomScheduler.*lr_scheduler_step"):
        _fit(tmp_path, Configurable(lambda m: ([(o := _sgd(m))], [CustomScheduler(o)])))


# -- several optimizers under automatic optimization --------------------------------------------------------


def test_several_optimizers_fail_before_training_starts(tmp_path):
    recorder = RecordingCallback()
    module = Configurable(lambda m: [_sgd(m), torch.optim.Adam(m.parameters())])
    with pytest.raises(RuntimeError, match="manual optimization"):
        _fit(tmp_path, module, callbacks=[recorder])
    assert module.seen == {}  # training_step never ran
    assert "setup:fit" in recorder.names() and "on_train_epoch_start" not in recorder.names()
    assert len(recorder.exceptions) == 1  # reported to callbacks like any failed run


def test_training_step_with_optimizer_idx_fails_before_training_starts(tmp_path):
    class OldStyle(Configurable):
        def training_step(self, batch, batch_idx, optimizer_idx):
            raise AssertionError("must not run")

    with pytest.raises(RuntimeError, match="optimizer_idx.*automatic_optimization = False"):
        _fit(tmp_path, OldStyle(lambda m: _sgd(m)))


# -- configure_optimizers returning None ---------------------------------------------------------------------


def test_placeholder_optimizer_has_no_param_groups(tmp_path):
    module = Configurable(lambda m: None)
    with pytest.warns(UserWarning, match="returned `None`, this fit will run with no optimizer"):
        trainer = _fit(tmp_path, module)
    placeholder = trainer.optimizers[0]
    assert placeholder.param_groups == []
    with pytest.raises(IndexError):
        placeholder.param_groups[0]["lr"]  # as in Lightning: there is no learning rate to read
    assert placeholder.state_dict() == {}
    assert trainer.global_step == 2
    path = tmp_path / "none.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=False)["optimizer_states"] == []
