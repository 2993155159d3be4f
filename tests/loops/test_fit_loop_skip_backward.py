"""`trainer.fit_loop.skip_backward`: a callback makes an epoch forward-only (what StochasticWeightAveraging's
BatchNorm pass uses): training_step runs, zero_grad and backward do not."""

import torch

from fulmen.callbacks import Callback
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class Recorder(TinyModule):
    def __init__(self):
        super().__init__()
        self.events = []

    def training_step(self, batch, batch_idx):
        self.events.append(("step", self.current_epoch))
        return super().training_step(batch, batch_idx)

    def on_after_backward(self):
        self.events.append(("backward", self.current_epoch))

    def on_before_zero_grad(self, optimizer):
        self.events.append(("zero_grad", self.current_epoch))


class ForwardOnlySecondEpoch(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        trainer.fit_loop.skip_backward = trainer.current_epoch == 1
        if trainer.current_epoch == 1:
            self.weights = pl_module.layer.weight.detach().clone()
            self.grad = pl_module.layer.weight.grad.detach().clone()


def test_skip_backward_runs_training_step_only(tmp_path):
    module, callback = Recorder(), ForwardOnlySecondEpoch()
    trainer = quiet_trainer(tmp_path, callbacks=[callback], max_epochs=2, limit_val_batches=0)
    trainer.fit(module, make_loader(16))
    second = [name for name, epoch in module.events if epoch == 1]
    assert second == ["step", "step"]
    assert [name for name, epoch in module.events if epoch == 0] == ["step", "zero_grad", "backward"] * 2
    # The optimizer still steps; with nothing zeroed or computed it applies the gradients left from epoch 0.
    assert trainer.global_step == 4
    expected = callback.weights - 0.1 * 2 * callback.grad
    torch.testing.assert_close(module.layer.weight.detach(), expected)
