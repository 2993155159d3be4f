"""`Optimization` built from its dependencies (hooks, config, state, strategy) in a unit test: no Trainer."""

from types import SimpleNamespace

import pytest
import torch

from fulmen.optimization.optimization import Optimization
from fulmen.optimization.placeholder import PlaceholderOptimizer
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.trainer.config import TrainerConfig
from fulmen.trainer.hook_dispatch import HookDispatch
from fulmen.trainer.run import Run
from fulmen.trainer.state import TrainerState
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule


class RecordingModule(TinyModule):
    """Records the optimization hooks it receives; `configure_optimizers` returns `self.output(self)`."""

    def __init__(self, automatic=True, output=None):
        super().__init__()
        self.automatic_optimization = automatic
        self.output = output or (lambda module: torch.optim.SGD(module.parameters(), lr=module.lr))
        self.events = []

    def configure_optimizers(self):
        return self.output(self)

    def on_before_backward(self, loss):
        self.events.append("on_before_backward")

    def backward(self, loss, *args, **kwargs):
        self.events.append(("backward", kwargs))
        loss.backward(*args, **kwargs)

    def on_after_backward(self):
        self.events.append("on_after_backward")

    def on_before_optimizer_step(self, optimizer):
        self.events.append(("on_before_optimizer_step", optimizer))


def _build(module, **flags):
    """What the Trainer passes `Optimization`, made by hand; the module gets a stand-in trainer."""
    strategy = SingleDeviceStrategy("cpu")
    strategy.connect(module)
    hooks = HookDispatch(None, strategy)  # no callbacks, so nothing receives a trainer
    hooks.start(Run(module=module))
    hooks.bind()
    config = TrainerConfig.from_flags(**flags)
    state = TrainerState()
    optimization = Optimization(hooks, config, state, strategy)
    optimization.setup(module)
    module.trainer = SimpleNamespace(strategy=strategy, optimizers=optimization.optimizers,
                                     lr_scheduler_configs=optimization.scheduler_configs,
                                     gradient_clip_val=config.gradient_clip_val,
                                     gradient_clip_algorithm=config.gradient_clip_algorithm)
    return optimization, state, strategy


def _loss(module):
    x, y = torch.randn(4, 32), torch.tensor([0, 1, 0, 1])
    return torch.nn.functional.cross_entropy(module(x), y)


def test_setup_reads_configure_optimizers():
    def output(module):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 2}}

    module = RecordingModule(output=output)
    optimization, _, strategy = _build(module)
    (optimizer,) = optimization.optimizers
    (config,) = optimization.scheduler_configs
    assert (config.interval, config.frequency) == ("step", 2)
    assert optimization.automatic_schedulers == [config]
    wrapped = module.optimizers()
    assert isinstance(wrapped, torch.optim.SGD) and wrapped.optimizer is optimizer
    assert strategy.lightning_optimizers == optimization.wrapped_optimizers == [wrapped]
    assert module.optimizers(use_pl_optimizer=False) is optimizer
    assert module.lr_schedulers() is config.scheduler


def test_manual_optimization_leaves_schedulers_to_the_user():
    def output(module):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]

    optimization, _, _ = _build(RecordingModule(automatic=False, output=output))
    assert len(optimization.scheduler_configs) == 1
    assert optimization.automatic_schedulers == []


def test_no_optimizer_gets_the_placeholder():
    module = RecordingModule(output=lambda module: None)
    with pytest.warns(UserWarning, match="`LightningModule.configure_optimizers` returned `None`, this fit will run with no optimizer"):
        optimization, _, _ = _build(module)
    assert [type(opt) for opt in optimization.optimizers] == [PlaceholderOptimizer]


def test_manual_step_through_the_wrapper_counts_global_step():
    module = RecordingModule(automatic=False)
    optimization, state, _ = _build(module)
    optimizer = module.optimizers()
    before = module.layer.weight.detach().clone()
    module.manual_backward(_loss(module))
    optimizer.step()
    optimizer.step()  # two optimizer steps: two counted, as in Lightning's manual optimization
    assert state.global_step == 2
    assert not torch.equal(before, module.layer.weight)
    raw = optimization.optimizers[0]
    assert module.events[-2:] == [("on_before_optimizer_step", raw)] * 2


def test_a_closure_that_is_not_callable_is_refused_and_the_wrapper_prints_as_lightnings():
    module = RecordingModule(automatic=False)
    _build(module)
    optimizer = module.optimizers()
    with pytest.raises(MisconfigurationException, match="When `optimizer.step\\(closure\\)` is called, the closure "
                                                         "should be callable; received int"):
        optimizer.step(closure=1)
    assert str(optimizer).startswith("LightningSGD (\nParameter Group 0\n")  # torch's text under the wrapper's name


def test_automatic_step_runs_the_closure_then_the_hook_then_clipping_and_leaves_counting_to_the_loop():
    module = RecordingModule()
    optimization, state, _ = _build(module, gradient_clip_val=1e-3, gradient_clip_algorithm="value")
    optimizer = module.optimizers()
    before = module.layer.weight.detach().clone()

    def closure():
        loss = _loss(module) * 1000
        optimization.backward(loss)
        return loss

    optimizer.step(closure=closure)
    assert state.global_step == 0  # the fit loop counts automatic steps, once per `optimizer_step` hook
    names = [event if isinstance(event, str) else event[0] for event in module.events]
    assert names == ["on_before_backward", "backward", "on_after_backward", "on_before_optimizer_step"]
    change = (module.layer.weight - before).abs().max().item()
    assert change == pytest.approx(module.lr * 1e-3, rel=1e-3)  # gradients were clipped by value before the step


def test_step_passes_keyword_arguments_to_the_optimizer_step():
    # Lightning: `optimizer.step(**kwargs)` reaches the wrapped optimizer's `step`, which rejects what it lacks.
    module = RecordingModule(automatic=False)
    _build(module)
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        module.optimizers().step(foo=1)


def test_manual_backward_passes_keyword_arguments_and_runs_the_hooks():
    module = RecordingModule(automatic=False)
    _build(module)
    loss = _loss(module)
    module.manual_backward(loss, retain_graph=True)
    loss.backward()  # works only because the graph was retained
    assert module.events == ["on_before_backward", ("backward", {"retain_graph": True}), "on_after_backward"]


def test_manual_backward_under_automatic_optimization_is_refused():
    module = RecordingModule()
    _build(module)
    with pytest.raises(MisconfigurationException, match="manual_backward"):
        module.manual_backward(_loss(module))


def test_clip_gradients_by_norm():
    module = RecordingModule(automatic=False)
    _build(module)
    (_loss(module) * 1000).backward()
    module.clip_gradients(module.optimizers(), gradient_clip_val=0.5)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in module.parameters()]))
    assert norm.item() == pytest.approx(0.5, rel=1e-4)


def test_clip_gradients_validates_what_the_user_passes():
    module = RecordingModule(automatic=False)
    _build(module)
    optimizer = module.optimizers()
    with pytest.raises(TypeError, match="`gradient_clip_val` should be an int or a float. Got 1."):
        module.clip_gradients(optimizer, gradient_clip_val="1")
    with pytest.raises(MisconfigurationException, match=r"Allowed algorithms: \['value', 'norm'\]"):
        module.clip_gradients(optimizer, gradient_clip_val=1.0, gradient_clip_algorithm="max")


def test_clip_gradients_must_agree_with_the_trainer_flags():
    module = RecordingModule()
    _build(module, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    optimizer = module.optimizers()
    module.clip_gradients(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")  # the same: accepted
    with pytest.raises(MisconfigurationException, match="disagree"):
        module.clip_gradients(optimizer, gradient_clip_val=1.0)
    with pytest.raises(MisconfigurationException, match="disagree"):
        module.clip_gradients(optimizer, gradient_clip_algorithm="value")
