"""Lightning's Precision plugin API on CPU: every member is real and a user subclass's override is honoured.
Expected names, defaults and classes were checked against Lightning 2.6.6 (`lightning.pytorch.plugins`)."""

import pytest
import torch

import fulmen as L
from fulmen.plugins import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def test_half_precision_defaults_and_class_as_lightning():
    assert HalfPrecision.precision == "16-true"
    assert HalfPrecision().precision == "16-true"
    assert not issubclass(HalfPrecision, DoublePrecision)  # Lightning's are siblings
    assert DoublePrecision.precision == "64-true"


def test_user_clip_gradients_override_is_used_by_trainer_clipping(tmp_path):
    seen = []

    class HalvingClip(Precision):
        def clip_gradients(self, optimizer, clip_val=0.0, gradient_clip_algorithm="norm"):
            seen.append((clip_val, str(gradient_clip_algorithm)))
            super().clip_gradients(optimizer, clip_val, gradient_clip_algorithm)

    quiet_trainer(tmp_path, plugins=[HalvingClip()], max_steps=2, gradient_clip_val=0.1,
                  gradient_clip_algorithm="value").fit(TinyModule(), make_loader(16))
    assert seen == [(0.1, "GradClipAlgorithmType.VALUE")] * 2


def test_clip_by_value_and_norm_through_the_plugin():
    layer = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.ones(2, 4) * 100).sum().backward()
    plugin = Precision()
    plugin.clip_gradients(optimizer, 0.0, "value")  # clip_val <= 0: nothing
    assert layer.weight.grad.abs().max() > 1
    plugin.clip_gradients(optimizer, 0.5, "value")
    assert layer.weight.grad.abs().max() <= 0.5
    plugin.clip_grad_by_norm(optimizer, 0.1)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in plugin.main_params(optimizer)]))
    assert total == pytest.approx(0.1, rel=1e-4)
    with pytest.raises(ValueError, match="'norm' or 'value'"):
        plugin.clip_gradients(optimizer, 1.0, "max")


def test_user_step_context_override_wraps_each_step(tmp_path):
    entered = []

    class Recording(Precision):
        def train_step_context(self):
            entered.append("train")
            return super().train_step_context()

        def val_step_context(self):
            entered.append("val")
            return super().val_step_context()

        def predict_step_context(self):
            entered.append("predict")
            return super().predict_step_context()

    class Module(TinyModule):
        def predict_step(self, batch, batch_idx):
            return self(batch[0])

    trainer = quiet_trainer(tmp_path, plugins=[Recording()], max_steps=2, limit_val_batches=1,
                            num_sanity_val_steps=0)
    trainer.fit(Module(), make_loader(16), make_loader(8))
    trainer.predict(Module(), make_loader(16))
    assert entered == ["train", "train", "val", "predict", "predict"]


def test_backward_steps_and_checkpoint_hooks_of_a_user_plugin(tmp_path):
    calls = []

    class Recording(Precision):
        def pre_backward(self, tensor, module):
            calls.append("pre_backward")
            return super().pre_backward(tensor, module)

        def backward(self, tensor, model, optimizer, *args, **kwargs):
            calls.append(("backward", type(optimizer).__name__))
            super().backward(tensor, model, optimizer, *args, **kwargs)

        def post_backward(self, tensor, module):
            calls.append("post_backward")
            return super().post_backward(tensor, module)

        def optimizer_step(self, optimizer, model, closure, **kwargs):
            calls.append(("optimizer_step", type(model).__name__))
            return super().optimizer_step(optimizer, model, closure, **kwargs)

        def on_save_checkpoint(self, checkpoint):
            checkpoint["precision_note"] = "saved"

        def on_load_checkpoint(self, checkpoint):
            calls.append(("on_load_checkpoint", checkpoint["precision_note"]))

        def teardown(self):
            calls.append("teardown")

    trainer = quiet_trainer(tmp_path, plugins=[Recording()], max_steps=1)
    trainer.fit(TinyModule(), make_loader(16))
    assert calls == [("optimizer_step", "TinyModule"), "pre_backward", ("backward", "SGD"), "post_backward",
                     "teardown"]
    path = tmp_path / "p.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["precision_note"] == "saved"
    calls.clear()
    quiet_trainer(tmp_path, plugins=[Recording()], max_steps=2).fit(TinyModule(), make_loader(16), ckpt_path=path)
    assert ("on_load_checkpoint", "saved") in calls


def test_lightning_parameter_names():
    plugin = Precision()
    assert plugin.convert_input(data=3) == 3
    assert plugin.convert_output(data=4) == 4
    plugin.load_state_dict(state_dict={})
    model = torch.nn.Linear(1, 1)
    assert plugin.connect(model, [], []) == (model, [], [])
    with plugin.module_init_context(), plugin.tensor_init_context(), plugin.test_step_context():
        assert torch.ones(1).dtype == torch.float32


def test_dtype_plugins_convert_inputs_outputs_and_new_tensors():
    double = DoublePrecision()
    assert double.convert_input({"x": torch.ones(1), "i": torch.ones(1, dtype=torch.long)})["x"].dtype == torch.float64
    assert double.convert_output(torch.ones(1, dtype=torch.float64)).dtype == torch.float32
    with double.module_init_context():
        assert torch.nn.Linear(1, 1).weight.dtype == torch.float64
    half = HalfPrecision("bf16-true")
    with half.tensor_init_context():
        assert torch.ones(1).dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32


def test_mixed_precision_autocast_context_manager():
    plugin = MixedPrecision("bf16-mixed", "cpu")
    manager = plugin.autocast_context_manager()
    assert isinstance(manager, torch.autocast)
    with plugin.forward_context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_optimizer_step_passes_keyword_arguments_to_the_optimizer():
    received = {}

    class KeywordSGD(torch.optim.SGD):
        def step(self, closure=None, scale=1.0):
            received["scale"] = scale
            return super().step(closure)

    layer = torch.nn.Linear(1, 1)
    optimizer = KeywordSGD(layer.parameters(), lr=0.1)

    def closure():
        loss = layer(torch.ones(1, 1)).sum()
        loss.backward()
        return loss

    Precision().optimizer_step(optimizer, layer, closure, scale=2.0)
    assert received == {"scale": 2.0}


def test_mixed_precision_refuses_to_clip_for_an_optimizer_that_unscales_itself():
    layer = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    optimizer._step_supports_amp_scaling = True  # what torch's fused optimizers declare
    plugin = MixedPrecision("16-mixed", "cpu")
    with pytest.raises(RuntimeError, match="cannot be clipped"):
        plugin.clip_gradients(optimizer, 1.0)
    plugin.clip_gradients(optimizer, 0.0)  # no clipping asked: fine
