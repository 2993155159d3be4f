"""How the loops call user step code: signatures without `batch_idx`, the closure's autograd, backward kwargs."""

import pytest
import torch

import fulmen as L
from helpers.tiny import TinyModule, make_loader, quiet_trainer

# -- step methods without `batch_idx` (Lightning inspects the signature and passes what it accepts) ---------


class NoBatchIdx(TinyModule):
    def training_step(self, batch):
        self.calls["training_step"] += 1
        return self.loss(batch)

    def validation_step(self, batch):
        self.calls["validation_step"] += 1
        self.log("val_loss", self.loss(batch))

    def test_step(self, batch):
        self.calls["test_step"] += 1
        self.log("test_loss", self.loss(batch))

    def predict_step(self, batch):
        return self(batch[0]).argmax(-1)


def test_step_methods_without_batch_idx_run_in_every_stage(tmp_path):
    module = NoBatchIdx()
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=1)
    trainer.fit(module, make_loader(16), make_loader(16))
    assert module.calls["training_step"] == 2
    assert module.calls["validation_step"] == 1 + 2  # sanity check, then the epoch's validation
    assert "val_loss" in trainer.callback_metrics
    assert trainer.test(module, make_loader(16), verbose=False)[0]["test_loss"] > 0
    predictions = trainer.predict(module, make_loader(16))
    assert len(predictions) == 2 and predictions[0].shape == (8,)


def test_several_eval_loaders_pass_batch_idx_and_dataloader_idx(tmp_path):
    seen = []

    class ByLoader(TinyModule):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            seen.append((dataloader_idx, batch_idx))

    quiet_trainer(tmp_path).validate(ByLoader(), [make_loader(8), make_loader(16)], verbose=False)
    assert seen == [(0, 0), (1, 0), (1, 1)]


def test_only_a_batch_argument_drops_batch_idx_in_validate(tmp_path):
    seen = []

    class OnlyBatch(TinyModule):
        def validation_step(self, batch):
            seen.append(len(batch))

    quiet_trainer(tmp_path).validate(OnlyBatch(), make_loader(8), verbose=False)
    assert seen == [2]


def test_step_taking_args_receives_batch_idx(tmp_path):
    received = []

    class VarArgs(TinyModule):
        def training_step(self, *args):
            received.append(len(args))
            return self.loss(args[0])

    quiet_trainer(tmp_path, max_epochs=1).fit(VarArgs(), make_loader(16))
    assert received == [2, 2]


# -- the closure runs with gradients enabled ----------------------------------------------------------------


class NoGradSGD(torch.optim.SGD):
    """Like some third-party optimizers: the whole `step` (closure included) runs under `torch.no_grad()`."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        super().step()
        return loss


def test_closure_runs_with_grad_under_a_no_grad_optimizer_step(tmp_path):
    class WithNoGradOptimizer(TinyModule):
        def configure_optimizers(self):
            return NoGradSGD(self.parameters(), lr=self.lr)

    torch.manual_seed(0)
    reference = TinyModule()
    torch.manual_seed(0)
    module = WithNoGradOptimizer()
    quiet_trainer(tmp_path, max_epochs=2).fit(reference, make_loader(32))
    quiet_trainer(tmp_path, max_epochs=2).fit(module, make_loader(32))
    for expected, actual in zip(reference.parameters(), module.parameters()):
        torch.testing.assert_close(actual, expected)


# -- manual_backward forwards keyword arguments --------------------------------------------------------------


def test_manual_backward_accepts_keyword_arguments(tmp_path):
    class TwoBackwards(TinyModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            optimizer.zero_grad()
            loss = self.loss(batch)
            self.manual_backward(loss, retain_graph=True)
            self.manual_backward(loss)  # the graph is still there: retain_graph reached `loss.backward`
            optimizer.step()

    module = TwoBackwards()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(module, make_loader(16))
    assert trainer.global_step == 2


def test_backward_override_receives_keyword_arguments(tmp_path):
    received = []

    class Recording(TinyModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def backward(self, loss, *args, **kwargs):
            received.append(kwargs)
            loss.backward(*args, **kwargs)

        def training_step(self, batch, batch_idx):
            self.manual_backward(self.loss(batch), retain_graph=False)
            self.optimizers().step()

    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(Recording(), make_loader(16))
    assert received == [{"retain_graph": False}]


# -- `dataloader_idx` in signatures is checked before the loop runs (Lightning's RuntimeErrors) ---------------


def test_several_val_loaders_need_a_dataloader_idx_argument(tmp_path):
    class NoIdx(TinyModule):
        def validation_step(self, batch, batch_idx):
            raise AssertionError("must not run")

    with pytest.raises(RuntimeError, match=r"several `val_dataloader`s.*NoIdx.validation_step\(\).*dataloader_idx=0"):
        quiet_trainer(tmp_path).validate(NoIdx(), [make_loader(8), make_loader(8)], verbose=False)


def test_single_test_loader_with_a_required_dataloader_idx_is_refused(tmp_path):
    class RequiredIdx(TinyModule):
        def test_step(self, batch, batch_idx, dataloader_idx):
            raise AssertionError("must not run")

    with pytest.raises(RuntimeError, match=r"single `test_dataloader`.*RequiredIdx.test_step\(\).*default"):
        quiet_trainer(tmp_path).test(RequiredIdx(), make_loader(8), verbose=False)


def test_several_predict_loaders_check_the_batch_hooks_too(tmp_path):
    class HookWithoutIdx(TinyModule):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return self(batch)

        def on_predict_batch_start(self, batch, batch_idx):
            raise AssertionError("must not run")

    loaders = [make_loader(8, targets=False), make_loader(8, targets=False)]
    with pytest.raises(RuntimeError, match=r"several `predict_dataloader`s.*on_predict_batch_start"):
        quiet_trainer(tmp_path).predict(HookWithoutIdx(), loaders)


def test_single_predict_loader_calls_batch_hooks_without_dataloader_idx(tmp_path):
    seen = []

    class TwoArgHooks(TinyModule):
        def predict_step(self, batch, batch_idx):
            return self(batch)

        def on_predict_batch_start(self, batch, batch_idx):
            seen.append(("start", batch_idx))

        def on_predict_batch_end(self, outputs, batch, batch_idx):
            seen.append(("end", batch_idx))

    quiet_trainer(tmp_path).predict(TwoArgHooks(), make_loader(8, targets=False))
    assert seen == [("start", 0), ("end", 0)]
