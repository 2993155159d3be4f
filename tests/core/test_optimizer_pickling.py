"""Trainers and modules holding wrapped optimizers can be pickled and deep-copied (`torch.save(trainer)` works)."""

import copy
import pickle

import torch

from helpers.tiny import TinyModule, make_loader, quiet_trainer


class KeepsOptimizer(TinyModule):
    """Keeps the wrapped optimizer on itself, as many user modules do, and attaches an LR scheduler."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]

    def on_train_start(self):
        self.kept = self.optimizers()


def _fitted(tmp_path):
    module = KeepsOptimizer()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(module, make_loader(16))
    return trainer, module


def _check_restored_wrapper(wrapped, raw, module):
    assert isinstance(wrapped, torch.optim.SGD)
    assert wrapped.optimizer is raw
    assert wrapped.param_groups is raw.param_groups  # one shared state, as before pickling
    assert all(a is b for a, b in zip(raw.param_groups[0]["params"], module.parameters()))


def test_pickle_trainer_after_fit(tmp_path):
    trainer, _ = _fitted(tmp_path)
    restored = pickle.loads(pickle.dumps(trainer))
    module = restored.lightning_module
    _check_restored_wrapper(module.optimizers(), restored.optimizers[0], module)
    assert module.kept is module.optimizers()
    assert restored.global_step == trainer.global_step


def test_torch_save_trainer(tmp_path):
    trainer, _ = _fitted(tmp_path)
    torch.save(trainer, tmp_path / "trainer.pt")
    restored = torch.load(tmp_path / "trainer.pt", weights_only=False)
    assert restored.current_epoch == 1


def test_pickle_module_with_optimizer_attached(tmp_path):
    _, module = _fitted(tmp_path)
    restored = pickle.loads(pickle.dumps(module))
    assert isinstance(restored.kept, torch.optim.SGD)
    torch.testing.assert_close(restored.layer.weight, module.layer.weight)


def test_deepcopy_trainer_and_module(tmp_path):
    trainer, module = _fitted(tmp_path)
    copied = copy.deepcopy(trainer)
    _check_restored_wrapper(copied.lightning_module.optimizers(), copied.optimizers[0], copied.lightning_module)
    assert copied.lightning_module is not module
    copied_module = copy.deepcopy(module)
    assert copied_module.kept is not module.kept and isinstance(copied_module.kept, torch.optim.SGD)


def test_restored_wrapper_step_is_not_shadowed_by_a_scheduler(tmp_path):
    trainer, _ = _fitted(tmp_path)
    restored = pickle.loads(pickle.dumps(trainer))
    raw = restored.optimizers[0]
    torch.optim.lr_scheduler.StepLR(raw, 1)  # may install its own `step` in the shared instance dict
    wrapped = restored.lightning_module.optimizers()
    assert wrapped.step.__func__ is type(wrapped)._strategy_step
