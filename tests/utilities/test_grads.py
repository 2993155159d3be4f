"""`grad_norm` (Lightning's `utilities.grads`), as users log it from `on_before_optimizer_step`.

Expected norms were recorded with Lightning 2.6.6 on the same module, seed and input.
"""

import pytest
import torch

import fulmen as L
import fulmen.utilities
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.grads import grad_norm


@pytest.fixture
def module_with_grads():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1, bias=False))
    module(torch.randn(4, 3)).sum().backward()
    return module


@pytest.mark.parametrize(("norm_type", "label", "expected"), [
    (2, "2.0", [0.257558, 0.789406, 1.686427, 1.87977]),
    (1, "1.0", [0.498635, 0.999443, 1.936293, 3.434372]),
    ("inf", "inf", [0.183561, 0.748437, 1.664358, 1.664358]),
    (3.5, "3.5", [0.210926, 0.753073, 1.665196, 1.694484]),
])
def test_grad_norm_keys_and_values(module_with_grads, norm_type, label, expected):
    norms = grad_norm(module_with_grads, norm_type)
    assert list(norms) == [f"grad_{label}_norm/0.weight", f"grad_{label}_norm/0.bias",
                           f"grad_{label}_norm/1.weight", f"grad_{label}_norm_total"]
    torch.testing.assert_close(torch.stack(list(norms.values())), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_total_is_the_norm_of_all_gradients_as_one_vector(module_with_grads):
    flat = torch.cat([p.grad.flatten() for p in module_with_grads.parameters()])
    norms = grad_norm(module_with_grads, 2)
    torch.testing.assert_close(norms["grad_2.0_norm_total"], flat.norm(2))


def test_group_separator_and_parameters_without_gradients(module_with_grads):
    assert sorted(grad_norm(module_with_grads, 2, group_separator=".")) == [
        "grad_2.0_norm.0.bias", "grad_2.0_norm.0.weight", "grad_2.0_norm.1.weight", "grad_2.0_norm_total"]
    module_with_grads[0].bias.grad = None
    assert "grad_2.0_norm/0.bias" not in grad_norm(module_with_grads, 2)
    assert grad_norm(torch.nn.Linear(2, 2), 2) == {}


@pytest.mark.parametrize("norm_type", [0, -1, "-2"])
def test_grad_norm_rejects_non_positive_norms(module_with_grads, norm_type):
    with pytest.raises(ValueError, match="must be a positive number or 'inf'"):
        grad_norm(module_with_grads, norm_type)


class LogsGradNorms(BoringModel):
    def on_before_optimizer_step(self, optimizer):
        self.log_dict(grad_norm(self.layer, norm_type=2))


def test_grad_norms_logged_from_a_module_reach_callback_metrics():
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(LogsGradNorms())
    assert {"grad_2.0_norm/weight", "grad_2.0_norm/bias", "grad_2.0_norm_total"} <= set(trainer.callback_metrics)
    assert fulmen.utilities.grad_norm is grad_norm
