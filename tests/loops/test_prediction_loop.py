"""predict: what it returns, which arguments predict_step gets, batch limits, modes."""

import pytest
import torch

import fulmen as L
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def _inputs(n, seed=1234):
    return make_loader(n, targets=False, seed=seed)


class RecordsPredict(TinyModule):
    def __init__(self):
        super().__init__()
        self.seen = []

    def predict_step(self, batch, batch_idx, dataloader_idx=None):
        trainer = self.trainer
        self.seen.append(dict(
            batch_idx=batch_idx, dataloader_idx=dataloader_idx, training=self.training,
            grad=torch.is_grad_enabled(), inference=torch.is_inference_mode_enabled(),
            predicting=trainer.predicting, fn=trainer.state.fn, stage=trainer.state.stage,
        ))
        return self(batch)


def test_predict_returns_one_prediction_per_batch(tmp_path):
    module = TinyModule()
    loader = _inputs(24)
    predictions = quiet_trainer(tmp_path).predict(module, loader)
    assert isinstance(predictions, list) and len(predictions) == 3
    with torch.no_grad():
        expected = [module(x) for x in loader]
    for got, want in zip(predictions, expected):
        assert got.shape == (8, 2)
        torch.testing.assert_close(got, want)
        assert not got.requires_grad and got.device.type == "cpu"


def test_default_predict_step_calls_forward(tmp_path):
    class CountsForward(TinyModule):
        def forward(self, x):
            self.calls["forward"] += 1
            return super().forward(x) * 0 + 7

    module = CountsForward()
    predictions = quiet_trainer(tmp_path).predict(module, _inputs(16))
    assert module.calls["forward"] == 2
    assert all(torch.equal(p, torch.full((8, 2), 7.0)) for p in predictions)


def test_predict_with_several_dataloaders_returns_a_list_per_dataloader(tmp_path):
    module = RecordsPredict()
    predictions = quiet_trainer(tmp_path).predict(module, [_inputs(16), _inputs(24, seed=3)])
    assert [len(per_loader) for per_loader in predictions] == [2, 3]
    assert [(s["dataloader_idx"], s["batch_idx"]) for s in module.seen] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]


def test_single_predict_dataloader_does_not_pass_dataloader_idx(tmp_path):
    module = RecordsPredict()
    quiet_trainer(tmp_path).predict(module, _inputs(16))
    assert [s["dataloader_idx"] for s in module.seen] == [None, None]


def test_return_predictions_false_returns_none(tmp_path):
    module = RecordsPredict()
    assert quiet_trainer(tmp_path).predict(module, _inputs(16), return_predictions=False) is None
    assert len(module.seen) == 2


@pytest.mark.parametrize(("limit", "expected"), [(2, 2), (0.5, 2), (1.0, 4), (9, 4)])
def test_limit_predict_batches(tmp_path, limit, expected):
    module = RecordsPredict()
    predictions = quiet_trainer(tmp_path, limit_predict_batches=limit).predict(module, _inputs(32))
    assert len(predictions) == expected
    assert len(module.seen) == expected


def test_predict_runs_in_eval_and_inference_mode_and_sets_the_stage(tmp_path):
    module = RecordsPredict()
    quiet_trainer(tmp_path).predict(module, _inputs(16))
    for seen in module.seen:
        assert not seen["training"] and not seen["grad"] and seen["inference"]
        assert seen["predicting"] and seen["fn"] == "predict" and seen["stage"] == "predict"


def test_predict_without_inference_mode_uses_no_grad(tmp_path):
    module = RecordsPredict()
    quiet_trainer(tmp_path, inference_mode=False).predict(module, _inputs(16))
    assert all(not s["inference"] and not s["grad"] for s in module.seen)


def test_predict_restores_train_mode_and_grad(tmp_path):
    module = RecordsPredict()
    module.train()
    quiet_trainer(tmp_path).predict(module, _inputs(16))
    assert module.training
    assert torch.is_grad_enabled()


def test_predict_uses_the_module_predict_dataloader(tmp_path):
    class WithLoader(RecordsPredict):
        def predict_dataloader(self):
            return _inputs(40)

    module = WithLoader()
    predictions = quiet_trainer(tmp_path).predict(module)
    assert len(predictions) == 5


def test_predict_with_a_datamodule(tmp_path):
    class DM(L.LightningDataModule):
        def predict_dataloader(self):
            return _inputs(24)

    module = RecordsPredict()
    trainer = quiet_trainer(tmp_path)
    predictions = trainer.predict(module, datamodule=DM())
    assert len(predictions) == 3
    assert isinstance(trainer.datamodule, DM)


def test_predict_returns_what_predict_step_returns(tmp_path):
    class DictPredictions(TinyModule):
        def predict_step(self, batch, batch_idx):
            return {"idx": batch_idx, "mean": batch.mean()}

    predictions = quiet_trainer(tmp_path).predict(DictPredictions(), _inputs(16))
    assert [p["idx"] for p in predictions] == [0, 1]
    assert all(p["mean"].ndim == 0 for p in predictions)


def test_predict_does_not_change_the_weights_or_counters(tmp_path):
    module = TinyModule()
    before = [p.detach().clone() for p in module.parameters()]
    trainer = quiet_trainer(tmp_path)
    trainer.predict(module, _inputs(16))
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert trainer.global_step == 0 and trainer.current_epoch == 0
    assert trainer.state.status == "finished"
