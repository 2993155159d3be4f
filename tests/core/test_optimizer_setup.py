"""What `configure_optimizers` may return: every accepted shape, and a clear error for the rest.

Expected error types and fit outcomes were observed by running Lightning 2.6.6 on the same returns.
"""

import warnings

import pytest
import torch
from torch.optim.lr_scheduler import ExponentialLR, ReduceLROnPlateau, StepLR

import fulmen as L
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import make_loader, quiet_trainer


def _sgd(module, lr=0.1):
    return torch.optim.SGD(module.parameters(), lr=lr)


class Configurable(L.LightningModule):
    """Linear(32, 2) whose `configure_optimizers` returns `build(self)`; logs `train_loss` each step.

    With `manual=True` it zeroes and steps every optimizer itself, and records what
    `self.optimizers()` / `self.lr_schedulers()` returned on the first batch in `self.seen`.
    """

    def __init__(self, build, manual=False):
        super().__init__()
        self.layer = torch.nn.Linear(32, 2)
        self.build = build
        self.automatic_optimization = not manual
        self.seen = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        self.log("train_loss", loss)
        if not self.seen:
            self.seen = {"wrapped": self.optimizers(), "raw": self.optimizers(use_pl_optimizer=False),
                         "schedulers": self.lr_schedulers()}
        if not self.automatic_optimization:
            optimizers = self.seen["wrapped"]
            optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
            for optimizer in optimizers:
                optimizer.zero_grad()
            self.manual_backward(loss)
            for optimizer in optimizers:
                optimizer.step()
        return loss

    def configure_optimizers(self):
        return self.build(self)


def _fit(tmp_path, module, **flags):
    flags = {"max_epochs": 1, "limit_train_batches": 2, "accelerator": "cpu", "devices": 1, **flags}
    trainer = quiet_trainer(tmp_path, **flags)
    trainer.fit(module, make_loader(16))
    return trainer


# -- returns that are not a configuration ---------------------------------------------------------------


@pytest.mark.parametrize("build, type_name", [
    (lambda m: "adam", "str"),
    (lambda m: 3, "int"),
    (lambda m: [], "list"),
    (lambda m: (), "tuple"),
    (lambda m: [_sgd(m), 3], "list"),
], ids=["string", "int", "empty_list", "empty_tuple", "optimizer_and_int"])
def test_unsupported_return_shows_its_type_and_the_accepted_shapes(tmp_path, build, type_name):
    with pytest.raises(MisconfigurationException, match=f"returned {type_name}[ \\[;]") as info:
        _fit(tmp_path, Configurable(build))
    message = str(info.value)
    assert "list/tuple of optimizers" in message and "two lists" in message and "'optimizer' key" in message


def test_two_lists_with_a_string_scheduler_names_what_a_scheduler_needs(tmp_path):
    with pytest.raises(TypeError, match="The provided lr scheduler `str` is invalid. It should have `state_dict` and "
                                        "`load_state_dict` methods"):
        _fit(tmp_path, Configurable(lambda m: ([_sgd(m)], "notascheduler")))


def test_dict_without_optimizer_key_is_a_key_error_listing_its_keys(tmp_path):
    with pytest.raises(KeyError, match=r"'optimizer'.*\['lr_scheduler'\]"):
        _fit(tmp_path, Configurable(lambda m: {"lr_scheduler": None}))


def test_optimizer_entry_that_is_not_an_optimizer(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"is str; expected a `torch.optim.Optimizer`"):
        _fit(tmp_path, Configurable(lambda m: {"optimizer": "sgd"}))


def test_several_optimizers_under_automatic_optimization_point_to_manual_optimization(tmp_path):
    with pytest.raises(RuntimeError, match=r"only supported with manual optimization: `configure_optimizers` returned "
                                           r"2\. Set `self.automatic_optimization = False`"):
        _fit(tmp_path, Configurable(lambda m: (_sgd(m), torch.optim.Adam(m.parameters()))))


# -- lr_scheduler_config errors -------------------------------------------------------------------------


def _with_config(with_scheduler=True, **config):
    """A build function returning {'optimizer': sgd, 'lr_scheduler': {'scheduler': StepLR, **config}}."""

    def build(module):
        optimizer = _sgd(module)
        scheduler = {"scheduler": StepLR(optimizer, step_size=1)} if with_scheduler else {}
        return {"optimizer": optimizer, "lr_scheduler": {**scheduler, **config}}

    return build


def test_lr_scheduler_config_without_scheduler_key(tmp_path):
    with pytest.raises(MisconfigurationException, match=r'must have the key "scheduler".*\{\'interval\': \'step\'\} has '
                                                         r"none"):
        _fit(tmp_path, Configurable(_with_config(with_scheduler=False, interval="step")))


def test_unknown_lr_scheduler_config_key_warns_and_fit_runs(tmp_path):
    with pytest.warns(RuntimeWarning, match="foo"):
        trainer = _fit(tmp_path, Configurable(_with_config(foo=1)))
    assert trainer.global_step == 2


def test_interval_other_than_step_or_epoch(tmp_path):
    with pytest.raises(MisconfigurationException, match=r'The "interval" key in lr scheduler dict must be "step" or '
                                                         r'"epoch" but is "batch"'):
        _fit(tmp_path, Configurable(_with_config(interval="batch")))


def test_frequency_zero_is_refused(tmp_path):
    # Lightning 2.6.6 accepts it and dies later with ZeroDivisionError; fulmen refuses up front.
    with pytest.raises(MisconfigurationException, match=r"\['frequency'\]=0.*int >= 1"):
        _fit(tmp_path, Configurable(_with_config(frequency=0)))


@pytest.mark.parametrize("form", ["dict", "two_lists", "config_dict"])
def test_reduce_on_plateau_without_monitor(tmp_path, form):
    def build(module):
        optimizer = _sgd(module)
        scheduler = ReduceLROnPlateau(optimizer)
        if form == "two_lists":
            return [optimizer], [scheduler]
        return {"optimizer": optimizer, "lr_scheduler": scheduler if form == "dict" else {"scheduler": scheduler}}

    with pytest.raises(MisconfigurationException, match=r"ReduceLROnPlateau.*'monitor'"):
        _fit(tmp_path, Configurable(build))


def test_plateau_config_dict_needs_its_own_monitor(tmp_path):
    def build(module):
        optimizer = _sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": ReduceLROnPlateau(optimizer)},
                "monitor": "train_loss"}

    with pytest.raises(MisconfigurationException, match="monitor"):
        _fit(tmp_path, Configurable(build))


def _plateau_on(monitor, strict):
    def build(module):
        optimizer = _sgd(module)
        config = {"scheduler": ReduceLROnPlateau(optimizer, patience=0), "monitor": monitor, "strict": strict}
        return {"optimizer": optimizer, "lr_scheduler": config}

    return build


def test_plateau_monitoring_an_unlogged_metric_lists_the_available_ones(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"ReduceLROnPlateau conditioned on metric val_loss which is not "
                                                         r"available\. Available metrics are: \['train_loss'\]"):
        _fit(tmp_path, Configurable(_plateau_on("val_loss", strict=True)))


def test_plateau_monitoring_an_unlogged_metric_without_strict_warns_and_keeps_the_lr(tmp_path):
    with pytest.warns(RuntimeWarning, match="conditioned on metric val_loss which is not available but strict is set "
                                            "to `False`. Skipping learning rate update"):
        trainer = _fit(tmp_path, Configurable(_plateau_on("val_loss", strict=False)), max_epochs=3)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.1
    assert trainer.global_step == 6


# -- schedulers that are not torch's ----------------------------------------------------------------------


class HandRolledScheduler:
    """Halves the LR on each step; has checkpoint methods but no torch LRScheduler base."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self, *args):
        for group in self.optimizer.param_groups:
            group["lr"] /= 2

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class NoStateScheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self, *args):
        pass


class SteppingItself(Configurable):
    """Overrides `lr_scheduler_step` and records each `(scheduler, metric)` it receives."""

    def lr_scheduler_step(self, scheduler, metric):
        self.scheduler_calls = getattr(self, "scheduler_calls", []) + [(scheduler, metric)]
        scheduler.step()


def _hand_rolled(config=None):
    def build(module):
        optimizer = _sgd(module)
        module.scheduler = HandRolledScheduler(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": module.scheduler, **(config or {})}}

    return build


def test_custom_scheduler_needs_an_lr_scheduler_step_override(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"`HandRolledScheduler` doesn't follow PyTorch's LRScheduler "
                                                         r"API. You should override the `LightningModule.lr_sch"):
        _fit(tmp_path, Configurable(_hand_rolled()))


def test_custom_scheduler_is_stepped_through_the_override(tmp_path):
    module = SteppingItself(_hand_rolled())
    trainer = _fit(tmp_path, module, max_epochs=2)
    assert module.scheduler_calls == [(module.scheduler, None)] * 2
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.025)


def test_custom_plateau_scheduler_receives_the_monitored_metric(tmp_path):
    module = SteppingItself(_hand_rolled({"monitor": "train_loss", "reduce_on_plateau": True}))
    trainer = _fit(tmp_path, module, max_epochs=2)
    assert [scheduler for scheduler, _ in module.scheduler_calls] == [module.scheduler] * 2
    assert module.scheduler_calls[-1][1] == trainer.callback_metrics["train_loss"]


@pytest.mark.parametrize("module_class", [Configurable, SteppingItself])
def test_scheduler_without_state_dict_is_a_type_error(tmp_path, module_class):
    def build(module):
        optimizer = _sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": NoStateScheduler(optimizer)}

    with pytest.raises(TypeError, match=r"`NoStateScheduler`.*state_dict"):
        _fit(tmp_path, module_class(build))


# -- None and extra keys ------------------------------------------------------------------------------------


def test_none_warns_and_fit_still_counts_steps(tmp_path):
    module = Configurable(lambda m: None)
    before = module.layer.weight.detach().clone()
    with pytest.warns(UserWarning, match="returned `?None"):
        trainer = _fit(tmp_path, module, max_epochs=2)
    assert trainer.global_step == 4
    assert torch.equal(module.layer.weight, before)


def test_none_under_manual_optimization_still_gives_one_optimizer(tmp_path):
    module = Configurable(lambda m: None, manual=True)
    with pytest.warns(UserWarning, match="returned `?None"):
        _fit(tmp_path, module)
    assert not isinstance(module.seen["wrapped"], list)


def test_unknown_optimizer_dict_key_is_a_runtime_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="foo"):
        _fit(tmp_path, Configurable(lambda m: {"optimizer": _sgd(m), "foo": 1}))


# -- accepted shapes reach the trainer -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["optimizer", "list", "tuple", "dict"])
def test_single_optimizer_shapes(tmp_path, shape):
    def build(module):
        module.optimizer = _sgd(module)
        return {"optimizer": module.optimizer, "list": [module.optimizer], "tuple": (module.optimizer,),
                "dict": {"optimizer": module.optimizer}}[shape]

    module = Configurable(build)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # none of these shapes deserves a warning
        for machine_hint in ("does not have many workers", "available but not used"):  # depend on the machine
            warnings.filterwarnings("ignore", message=f".*{machine_hint}")
        trainer = _fit(tmp_path, module)
    assert trainer.optimizers == [module.optimizer]
    assert trainer.lr_scheduler_configs == []
    assert module.seen["raw"] is module.optimizer and module.seen["schedulers"] is None
    assert trainer.global_step == 2


@pytest.mark.parametrize("schedulers_as_list", [True, False])
def test_two_lists_use_the_documented_config_defaults(tmp_path, schedulers_as_list):
    def build(module):
        optimizer = _sgd(module)
        module.scheduler = StepLR(optimizer, step_size=1)
        return [optimizer], [module.scheduler] if schedulers_as_list else module.scheduler

    module = Configurable(build)
    trainer = _fit(tmp_path, module)
    (config,) = trainer.lr_scheduler_configs
    assert config.scheduler is module.scheduler and module.seen["schedulers"] is module.scheduler
    assert (config.interval, config.frequency, config.strict, config.name, config.monitor) == \
        ("epoch", 1, True, None, None)
    assert config.reduce_on_plateau is False


def test_two_lists_with_config_dicts_keep_their_settings(tmp_path):
    def build(module):
        optimizer = _sgd(module)
        return [optimizer], [{"scheduler": StepLR(optimizer, 1), "interval": "step", "frequency": 2, "name": "decay"},
                             {"scheduler": ExponentialLR(optimizer, 0.5)}]

    trainer = _fit(tmp_path, Configurable(build))
    first, second = trainer.lr_scheduler_configs
    assert (first.interval, first.frequency, first.name) == ("step", 2, "decay")
    assert (second.interval, second.frequency, second.name) == ("epoch", 1, None)
    assert isinstance(first.scheduler, StepLR) and isinstance(second.scheduler, ExponentialLR)


def test_dict_with_plateau_and_top_level_monitor(tmp_path):
    def build(module):
        optimizer = _sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": ReduceLROnPlateau(optimizer), "monitor": "train_loss"}

    module = Configurable(build)
    trainer = _fit(tmp_path, module)
    (config,) = trainer.lr_scheduler_configs
    assert config.monitor == "train_loss" and config.reduce_on_plateau is True and config.strict is True
    assert isinstance(module.seen["schedulers"], ReduceLROnPlateau)


@pytest.mark.parametrize("container", [list, tuple])
def test_several_dicts_under_manual_optimization(tmp_path, container):
    def build(module):
        sgd, adam = _sgd(module), torch.optim.Adam(module.parameters(), lr=0.01)
        module.raw = [sgd, adam]
        return container([{"optimizer": sgd, "lr_scheduler": StepLR(sgd, 1)},
                          {"optimizer": adam, "lr_scheduler": {"scheduler": ExponentialLR(adam, 0.5), "name": "exp"}}])

    module = Configurable(build, manual=True)
    trainer = _fit(tmp_path, module)
    assert trainer.optimizers == module.raw
    assert [config.name for config in trainer.lr_scheduler_configs] == [None, "exp"]
    wrapped = module.seen["wrapped"]
    assert isinstance(wrapped, list) and len(wrapped) == 2
    assert isinstance(wrapped[0], torch.optim.SGD) and isinstance(wrapped[1], torch.optim.Adam)
    assert module.seen["raw"] == module.raw
    assert [type(s) for s in module.seen["schedulers"]] == [StepLR, ExponentialLR]
    assert trainer.global_step == 4  # manual optimization counts every optimizer step


def test_wrapped_optimizer_shares_everything_with_the_real_one(tmp_path):
    def build(module):
        module.optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
        return module.optimizer

    module = Configurable(build)
    _fit(tmp_path, module)
    wrapped, raw = module.seen["wrapped"], module.seen["raw"]
    assert wrapped is not raw and raw is module.optimizer
    assert isinstance(wrapped, torch.optim.SGD)
    assert wrapped.optimizer is raw
    assert wrapped.param_groups is raw.param_groups and wrapped.state is raw.state
    assert wrapped.param_groups[0]["momentum"] == 0.9


# -- checks Lightning makes across optimizers and schedulers ------------------------------------------------------


class Stepless(HandRolledScheduler):
    """A scheduler the user drives with a method of its own: checkpoint methods, no `step`."""

    halve = HandRolledScheduler.step
    step = None


def test_two_lists_take_a_scheduler_without_step_under_manual_optimization(tmp_path):
    def build(module):
        optimizer = _sgd(module)
        return [optimizer], [Stepless(optimizer)]

    trainer = _fit(tmp_path, Configurable(build, manual=True))
    assert type(trainer.lr_scheduler_configs[0].scheduler) is Stepless


def test_a_scheduler_on_an_optimizer_not_returned_raises(tmp_path):
    def build(module):
        other = _sgd(module)
        return [_sgd(module)], [StepLR(other, 1)]

    with pytest.raises(MisconfigurationException, match="Some schedulers are attached with an optimizer that wasn't "
                                                         "returned from `configure_optimizers`: `StepLR` steps a `SGD`"):
        _fit(tmp_path, Configurable(build))


def test_one_cycle_stepped_per_epoch_warns(tmp_path):
    def build(interval):
        def configure(module):
            optimizer = _sgd(module)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=100)
            config = {"scheduler": scheduler} if interval is None else {"scheduler": scheduler, "interval": interval}
            return {"optimizer": optimizer, "lr_scheduler": config}

        return configure

    with pytest.warns(RuntimeWarning, match="A `OneCycleLR` scheduler is using 'interval': 'epoch'. Are you sure you "
                                            "didn't mean 'interval': 'step'?"):
        _fit(tmp_path, Configurable(build(None)))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*OneCycleLR")
        _fit(tmp_path, Configurable(build("step")))


def test_a_top_level_monitor_applies_to_a_plateau_scheduler_only(tmp_path):
    def build(module):
        optimizer = _sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": StepLR(optimizer, 1), "monitor": "train_loss"}

    assert _fit(tmp_path, Configurable(build)).lr_scheduler_configs[0].monitor is None  # as Lightning
