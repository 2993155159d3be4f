"""Optimization hooks and the errors around them: zero_grad, clipping, custom steps, step outputs, toggling.

Expected behaviour was observed by running Lightning 2.6.6 with the same modules and flags.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fulmen as L
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import make_loader, quiet_trainer


class Classifier(L.LightningModule):
    """Linear(32, 2), cross-entropy, SGD lr 0.1; `output` shapes what `training_step` returns."""

    def __init__(self, output=None):
        super().__init__()
        self.layer = nn.Linear(32, 2)
        self.output = output or (lambda loss: loss)
        self.losses, self.batch_end_outputs = [], []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.layer(x), y)
        self.losses.append(loss.detach().clone())
        return self.output(loss)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.batch_end_outputs.append(outputs)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Manual(Classifier):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = super().training_step(batch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


def _fit(tmp_path, module, samples=16, **flags):
    flags = {"max_epochs": 1, "accelerator": "cpu", "devices": 1, **flags}
    trainer = quiet_trainer(tmp_path, **flags)
    trainer.fit(module, make_loader(samples))
    return trainer


def _grad_norm(module):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()])).item()


# -- misconfiguration ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, match", [
    ({"accumulate_grad_batches": 2}, r"Automatic gradient accumulation is not supported for manual optimization\. "
                                     r"Remove `Trainer\(accumulate_grad_batches=2\)`"),
    ({"gradient_clip_val": 0.5}, r"Automatic gradient clipping is not supported for manual optimization\. Remove "
                                 r"`Trainer\(gradient_clip_val=0.5\)`.*clip_gradients"),
], ids=["accumulate", "clip"])
def test_manual_optimization_refuses_automatic_only_flags(tmp_path, flags, match):
    with pytest.raises(MisconfigurationException, match=match):
        _fit(tmp_path, Manual(), **flags)


def test_manual_optimization_accepts_gradient_clip_val_zero(tmp_path):
    assert _fit(tmp_path, Manual(), gradient_clip_val=0.0).global_step == 2


def test_manual_backward_under_automatic_optimization(tmp_path):
    class BackwardTwice(Classifier):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.manual_backward(loss)
            return loss

    with pytest.raises(MisconfigurationException, match=r"to use manual_backward, please disable automatic optimization: "
                                                         r"set model property `automatic_optimization` as False"):
        _fit(tmp_path, BackwardTwice())


class ClipsItself(Classifier):
    """Overrides `configure_gradient_clipping`, records its arguments, then clips with `clip_args`."""

    def __init__(self, **clip_args):
        super().__init__()
        self.clip_args = clip_args
        self.clipping_calls, self.norms_before_step, self.norms_after_step = [], [], []

    def on_before_optimizer_step(self, optimizer):
        self.norms_before_step.append(_grad_norm(self))

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clipping_calls.append((optimizer, gradient_clip_val, gradient_clip_algorithm))
        self.clip_gradients(optimizer, **self.clip_args)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.norms_after_step.append(_grad_norm(self))  # gradients are zeroed only in the next closure


@pytest.mark.parametrize("clip_args, flags, match", [
    ({"gradient_clip_val": 0.3}, {"gradient_clip_val": 0.5},
     r"You have set `Trainer\(gradient_clip_val=0.5\)` and have passed `clip_gradients\(gradient_clip_val=0.3\)`"),
    ({"gradient_clip_val": 0.5, "gradient_clip_algorithm": "value"},
     {"gradient_clip_val": 0.5, "gradient_clip_algorithm": "norm"}, r"'norm'.*'value'"),
], ids=["value", "algorithm"])
def test_clip_gradients_disagreeing_with_the_trainer(tmp_path, clip_args, flags, match):
    with pytest.raises(MisconfigurationException, match=match):
        _fit(tmp_path, ClipsItself(**clip_args), **flags)


def test_clip_gradients_agreeing_with_the_trainer_is_fine(tmp_path):
    module = ClipsItself(gradient_clip_val=0.5, gradient_clip_algorithm="value")
    assert _fit(tmp_path, module, gradient_clip_val=0.5).global_step == 2


def test_unknown_gradient_clip_algorithm_at_trainer_init(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"`gradient_clip_algorithm` foo is invalid. Allowed "
                                                         r"algorithms: \['value', 'norm'\]"):
        quiet_trainer(tmp_path, gradient_clip_algorithm="foo")


@pytest.mark.parametrize("output, match", [
    (lambda loss: {"los": loss}, r"when `training_step` returns a dict, the 'loss' key needs to be present; the "
                                 r"dict's keys are \['los'\]"),
    (lambda loss: "loss", r"must return a Tensor, a dict, or None \(where the step will be skipped\); it returned str"),
    (lambda loss: 3, r"must return a Tensor, a dict, or None \(where the step will be skipped\); it returned int"),
], ids=["dict_without_loss", "string", "int"])
def test_training_step_output_that_is_not_a_loss(tmp_path, output, match):
    with pytest.raises(MisconfigurationException, match=match):
        _fit(tmp_path, Classifier(output))


# -- zero_grad, clipping and step hooks ---------------------------------------------------------------------


def test_optimizer_zero_grad_runs_once_per_accumulation_window(tmp_path):
    class RecordsZeroGrad(Classifier):
        def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
            self.zero_grad_calls = getattr(self, "zero_grad_calls", []) + [(epoch, batch_idx, optimizer)]
            optimizer.zero_grad()

    module = RecordsZeroGrad()
    trainer = _fit(tmp_path, module, samples=40, max_epochs=2, accumulate_grad_batches=2)  # 5 batches an epoch
    optimizer = trainer.optimizers[0]
    assert module.zero_grad_calls == [(epoch, batch, optimizer) for epoch in (0, 1) for batch in (0, 2, 4)]
    assert trainer.global_step == 6


@pytest.mark.parametrize("flags, expected", [
    ({"gradient_clip_val": 0.05}, (0.05, None)),
    ({"gradient_clip_val": 0.01, "gradient_clip_algorithm": "value"}, (0.01, "value")),
    ({}, (None, None)),
], ids=["norm", "value", "unset"])
def test_configure_gradient_clipping_receives_the_trainer_flags(tmp_path, flags, expected):
    module = ClipsItself()
    trainer = _fit(tmp_path, module, **flags)
    assert len(module.clipping_calls) == 2
    optimizer, value, algorithm = module.clipping_calls[0]
    assert optimizer is trainer.optimizers[0]
    assert (value, algorithm) == expected


def test_on_before_optimizer_step_sees_gradients_before_clipping(tmp_path):
    module = ClipsItself()
    _fit(tmp_path, module, gradient_clip_val=0.05)
    assert min(module.norms_before_step) > 0.5
    assert module.norms_after_step == pytest.approx([0.05] * 2, rel=1e-4)


def test_configure_gradient_clipping_override_can_clip_by_value_without_trainer_flags(tmp_path):
    module = ClipsItself(gradient_clip_val=0.01, gradient_clip_algorithm="value")
    _fit(tmp_path, module)
    assert max(p.grad.abs().max().item() for p in module.parameters()) <= 0.01
    assert min(module.norms_before_step) > 0.5


def test_optimizer_step_override_with_lbfgs_reduces_the_loss(tmp_path):
    class WithLBFGS(Classifier):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.mse_loss(self.layer(x), F.one_hot(y, 2).float())
            self.losses.append(loss.item())
            return loss

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            self.steps_entered = getattr(self, "steps_entered", 0) + 1
            optimizer.step(closure=optimizer_closure)

        def configure_optimizers(self):
            return torch.optim.LBFGS(self.parameters(), lr=1, max_iter=20, line_search_fn="strong_wolfe")

    module = WithLBFGS()
    trainer = _fit(tmp_path, module, samples=8, max_epochs=3)  # one batch an epoch
    assert trainer.global_step == 3 and module.steps_entered == 3
    assert len(module.losses) > 3  # LBFGS re-evaluates the closure
    assert module.losses[-1] < 1e-3 * module.losses[0]


# -- what on_train_batch_end receives ---------------------------------------------------------------------


class SeesOutputs(L.Callback):
    def __init__(self):
        self.outputs = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append(outputs)


def test_bare_tensor_output_becomes_a_dict_with_a_detached_loss(tmp_path):
    module, callback = Classifier(), SeesOutputs()
    _fit(tmp_path, module, callbacks=[callback])
    for outputs, loss in zip(module.batch_end_outputs, module.losses):
        assert set(outputs) == {"loss"} and not outputs["loss"].requires_grad
        assert torch.equal(outputs["loss"], loss)
    assert callback.outputs == module.batch_end_outputs


def test_dict_output_keeps_its_extra_entries(tmp_path):
    module = Classifier(lambda loss: {"loss": loss, "extra": loss * 2, "count": 3})
    _fit(tmp_path, module)
    outputs = module.batch_end_outputs[0]
    assert set(outputs) == {"loss", "extra", "count"}
    assert not outputs["loss"].requires_grad and torch.equal(outputs["loss"], module.losses[0])
    assert torch.allclose(outputs["extra"], module.losses[0] * 2) and outputs["count"] == 3


def test_dict_output_extras_are_passed_as_returned(tmp_path):
    module = Classifier(lambda loss: {"loss": loss, "extra": loss * 2})
    _fit(tmp_path, module)
    assert module.batch_end_outputs[0]["extra"].requires_grad


def test_loss_in_outputs_is_divided_under_accumulation(tmp_path):
    module = Classifier(lambda loss: {"loss": loss, "extra": loss})
    _fit(tmp_path, module, accumulate_grad_batches=2)
    for outputs, loss in zip(module.batch_end_outputs, module.losses):
        assert torch.allclose(outputs["loss"], loss / 2)
        assert torch.allclose(outputs["extra"], loss)  # extras are not divided


# -- toggle_optimizer ----------------------------------------------------------------------------------------


class TwoHeads(L.LightningModule):
    """Manual optimization with optimizer 0 over `a` and optimizer 1 over `b` (plus `a.bias` when `share`)."""

    def __init__(self, share=False, frozen=False, use_context=False):
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = nn.Linear(32, 2), nn.Linear(32, 2)
        if frozen:
            self.b.bias.requires_grad = False
        self.share, self.use_context = share, use_context
        self.states = {}

    def _requires_grad(self):
        return {name: p.requires_grad for name, p in self.named_parameters()}

    def training_step(self, batch, batch_idx):
        x, y = batch
        first, second = self.optimizers()
        for name, optimizer in (("first", first), ("second", second)):
            if self.use_context:
                with self.toggled_optimizer(optimizer):
                    self.states[name] = self._requires_grad()
            else:
                self.toggle_optimizer(optimizer)
                self.states[name] = self._requires_grad()
                loss = F.cross_entropy(self.a(x) + self.b(x), y)
                optimizer.zero_grad()
                self.manual_backward(loss)
                self.states[name + "_has_grad"] = {n: p.grad is not None for n, p in self.named_parameters()}
                optimizer.step()
                self.untoggle_optimizer(optimizer)
            self.states[name + "_after"] = self._requires_grad()

    def configure_optimizers(self):
        second_params = list(self.b.parameters()) + ([self.a.bias] if self.share else [])
        return torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(second_params, lr=0.1)


def _flags(a_weight, a_bias, b_weight, b_bias):
    return {"a.weight": a_weight, "a.bias": a_bias, "b.weight": b_weight, "b.bias": b_bias}


@pytest.mark.parametrize("use_context", [False, True], ids=["toggle_untoggle", "toggled_optimizer"])
def test_toggling_freezes_the_other_optimizers_parameters_and_restores_them(tmp_path, use_context):
    module = TwoHeads(use_context=use_context)
    _fit(tmp_path, module, max_steps=1)
    assert module.states["first"] == _flags(True, True, False, False)
    assert module.states["second"] == _flags(False, False, True, True)
    assert module.states["first_after"] == module.states["second_after"] == _flags(True, True, True, True)


def test_only_the_toggled_optimizers_parameters_get_gradients(tmp_path):
    module = TwoHeads()
    _fit(tmp_path, module, max_steps=2)
    assert module.states["first_has_grad"] == _flags(True, True, False, False)


def test_a_shared_parameter_stays_trainable_for_either_optimizer(tmp_path):
    module = TwoHeads(share=True)
    _fit(tmp_path, module, max_steps=1)
    assert module.states["first"] == _flags(True, True, False, False)
    assert module.states["second"] == _flags(False, True, True, True)
    assert module.states["second_after"] == _flags(True, True, True, True)


@pytest.mark.parametrize("share", [False, True])
def test_a_parameter_frozen_before_toggling_stays_frozen(tmp_path, share):
    module = TwoHeads(share=share, frozen=True)
    _fit(tmp_path, module, max_steps=1)
    assert module.states["second"] == _flags(False, share, True, False)
    assert module.states["first_after"] == module.states["second_after"] == _flags(True, True, True, False)


def test_toggled_optimizer_restores_flags_when_the_block_raises(tmp_path):
    class Raises(TwoHeads):
        def training_step(self, batch, batch_idx):
            first, _ = self.optimizers()
            with pytest.raises(ValueError):
                with self.toggled_optimizer(first):
                    raise ValueError("inside the block")
            self.states["after"] = self._requires_grad()

    module = Raises()
    _fit(tmp_path, module, max_steps=1)
    assert module.states["after"] == _flags(True, True, True, True)
