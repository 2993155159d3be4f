"""EarlyStopping: when fit stops for a scripted sequence of validation values (one per epoch).

The expected epochs, `stopped_epoch`, `wait_count` and `best_score` were observed with Lightning 2.6.6
on the same sequences (4 training batches per epoch, `max_epochs = len(values)`).
"""

import math

import pytest
import torch

from fulmen.callbacks import EarlyStopping, EarlyStoppingReason, ModelCheckpoint
from fulmen.callbacks.early_stopping import EarlyStoppingReason as FromModule
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, make_loader, quiet_trainer

NAN, INF = float("nan"), float("inf")


class ScriptedModule(TinyModule):
    """Logs `values[current_epoch]` as `val_loss` in validation."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", float(self.values[self.current_epoch]))


def fit(tmp_path, values, callbacks, ckpt_path=None, **flags):
    flags = {"max_epochs": len(values), "num_sanity_val_steps": 0, **flags}
    trainer = quiet_trainer(tmp_path, callbacks=callbacks, **flags)
    model = ScriptedModule(values)
    trainer.fit(model, make_loader(32), make_loader(32), ckpt_path=ckpt_path)
    return trainer, model


# values, EarlyStopping options, trainer flags -> epochs trained, stopped_epoch, wait_count, best_score
CASES = {
    "patience": ([1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.5, 0.4], dict(patience=3), {}, (5, 4, 3, 0.9)),
    # improvement must exceed min_delta strictly: 1.75 and 1.25 (exactly 0.25 better) do not count
    "min_delta": ([2.0, 1.75, 1.5, 1.375, 1.25, 1.0, 0.5], dict(min_delta=0.25, patience=2), {}, (5, 4, 2, 1.5)),
    "min_delta_max": ([0.0, 0.25, 0.5, 0.625, 0.75, 1.0, 2.0], dict(min_delta=0.25, patience=2, mode="max"), {},
                      (5, 4, 2, 0.5)),
    "patience_0": ([1.0, 0.9, 0.9, 0.8, 0.7], dict(patience=0), {}, (3, 2, 1, 0.9)),
    "mode_max": ([0.1, 0.5, 0.4, 0.3, 0.2, 0.9], dict(patience=2, mode="max"), {}, (4, 3, 2, 0.5)),
    # should_stop is set at epoch 1, but training goes on until 4 epochs are done
    "min_epochs": ([1.0] * 6, dict(patience=1), dict(min_epochs=4), (4, 3, 3, 1.0)),
    "nan_stops_at_once": ([1.0, NAN, 0.5, 0.4, 0.3], dict(patience=3), {}, (2, 1, 0, 1.0)),
    "inf_stops_at_once": ([1.0, INF, 0.5, 0.4, 0.3], dict(patience=3), {}, (2, 1, 0, 1.0)),
    "nan_without_check_finite": ([1.0, NAN, 0.5, 0.4, 0.3], dict(patience=3, check_finite=False), {},
                                 (5, 0, 0, 0.3)),
    "stopping_threshold": ([1.0, 0.6, 0.4, 0.3, 0.2], dict(stopping_threshold=0.5), {}, (3, 2, 0, 0.6)),
    "stopping_threshold_not_reached_when_equal": ([1.0, 0.5, 0.4, 0.3, 0.2], dict(stopping_threshold=0.5), {},
                                                  (3, 2, 0, 0.5)),
    "divergence_threshold": ([1.0, 0.9, 2.5, 0.3, 0.2], dict(divergence_threshold=2.0), {}, (3, 2, 0, 0.9)),
    "divergence_threshold_not_passed_when_equal": ([1.0, 2.0, 0.5, 0.3, 0.2], dict(divergence_threshold=2.0), {},
                                                   (5, 0, 0, 0.2)),
    "check_on_train_epoch_end": ([1.0] * 4, dict(patience=1, check_on_train_epoch_end=True), {}, (2, 1, 1, 1.0)),
    # two validations per epoch: the second one (same value) already exhausts patience=1
    "val_check_interval": ([1.0] * 4, dict(patience=1), dict(val_check_interval=2), (1, 0, 1, 1.0)),
    # validation (and so the check) only every second epoch
    "check_val_every_n_epoch": ([1.0] * 8, dict(patience=1), dict(check_val_every_n_epoch=2), (4, 3, 1, 1.0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stopping(tmp_path, case):
    values, options, flags, (epochs, stopped_epoch, wait_count, best) = CASES[case]
    callback = EarlyStopping("val_loss", **options)
    trainer, model = fit(tmp_path, values, [callback], **flags)
    assert trainer.current_epoch == epochs
    assert model.calls["training_step"] == 4 * epochs
    assert callback.stopped_epoch == stopped_epoch
    assert callback.wait_count == wait_count
    assert callback.best_score.item() == pytest.approx(best)
    assert trainer.should_stop == (epochs < len(values) or case == "min_epochs")


def test_stopping_reason(tmp_path):
    callback = EarlyStopping("val_loss", patience=3)
    fit(tmp_path, [1.0, NAN, 0.5], [callback])
    assert callback.stopping_reason_message == ("Monitored metric val_loss = nan is not finite. Previous best value "
                                                "was 1.000. Signaling Trainer to stop.")
    assert callback.stopping_reason is EarlyStoppingReason.NON_FINITE_METRIC


def test_stopping_reason_enum_matches_lightning():
    assert EarlyStoppingReason is FromModule
    assert [(member.name, member.value) for member in EarlyStoppingReason] == [
        ("NOT_STOPPED", 0), ("STOPPING_THRESHOLD", 1), ("DIVERGENCE_THRESHOLD", 2), ("PATIENCE_EXHAUSTED", 3),
        ("NON_FINITE_METRIC", 4)]


# values, EarlyStopping options -> reason, stopped_epoch (Lightning 2.6.6 on the same sequences)
REASONS = {
    "patience": ([1.0] * 6, dict(patience=2), EarlyStoppingReason.PATIENCE_EXHAUSTED, 2),
    "stopping_threshold": ([3.0, 2.0, 0.5, 0.4], dict(stopping_threshold=1.0), EarlyStoppingReason.STOPPING_THRESHOLD,
                           2),
    "divergence": ([1.0, 5.0, 20.0, 1.0], dict(divergence_threshold=10.0), EarlyStoppingReason.DIVERGENCE_THRESHOLD, 2),
    "not_stopped": ([3.0, 2.0, 1.0], dict(patience=5), EarlyStoppingReason.NOT_STOPPED, 0),
}


MESSAGES = {
    "patience": "Monitored metric val_loss did not improve in the last 2 records. Best score: 1.000. Signaling Trainer "
                "to stop.",
    "stopping_threshold": "Stopping threshold reached: val_loss = 0.5 < 1.0. Signaling Trainer to stop.",
    "divergence": "Divergence threshold reached: val_loss = 20.0 < 10.0. Signaling Trainer to stop.",
    "not_stopped": None,
}


@pytest.mark.parametrize("case", sorted(REASONS))
def test_stopping_reason_per_criterion_survives_state_dict(tmp_path, case):
    values, options, reason, stopped_epoch = REASONS[case]
    callback = EarlyStopping("val_loss", **options)
    fit(tmp_path, values, [callback])
    assert (callback.stopping_reason, callback.stopped_epoch) == (reason, stopped_epoch)
    assert callback.stopping_reason_message == MESSAGES[case]  # Lightning 2.6.6's text (it is saved in checkpoints)
    state = callback.state_dict()
    assert state["stopping_reason"] == reason.value  # an int in the checkpoint, as Lightning writes it
    restored = EarlyStopping("val_loss")
    restored.load_state_dict(state)
    assert restored.stopping_reason is reason


def test_stopping_reason_loads_from_older_fulmen_checkpoints():
    callback = EarlyStopping("val_loss")
    callback.load_state_dict({"wait_count": 3, "stopped_epoch": 4, "best_score": torch.tensor(0.5), "patience": 3,
                              "stopping_reason": "patience_exhausted", "stopping_reason_message": "x"})
    assert callback.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED


def test_strict_missing_metric_raises(tmp_path):
    with pytest.raises(RuntimeError, match="'nope'.*val_loss"):
        fit(tmp_path, [1.0] * 3, [EarlyStopping("nope")])


def test_not_strict_missing_metric_keeps_training(tmp_path):
    callback = EarlyStopping("nope", strict=False)
    trainer, _ = fit(tmp_path, [1.0] * 3, [callback])
    assert trainer.current_epoch == 3 and not trainer.should_stop
    assert callback.stopped_epoch == 0 and math.isinf(callback.best_score.item())


def test_state_is_saved_in_checkpoints_and_restored_on_resume(tmp_path):
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.5, 0.4]  # stops after epoch 4 with patience 3
    checkpoint_callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1)
    # ModelCheckpoint first: it still saves after EarlyStopping has updated its state
    fit(tmp_path, values, [checkpoint_callback, EarlyStopping("val_loss", patience=3)], max_epochs=3,
        enable_checkpointing=True)
    path = tmp_path / "ckpts" / "epoch=2-step=12.ckpt"
    state = torch.load(path, weights_only=True)["callbacks"]["EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"]
    assert state["wait_count"] == 1 and state["patience"] == 3 and state["stopped_epoch"] == 0
    assert state["best_score"].item() == pytest.approx(0.9)

    callback = EarlyStopping("val_loss", patience=3)
    trainer, model = fit(tmp_path, values, [callback], ckpt_path=path)
    assert (trainer.current_epoch, callback.stopped_epoch, callback.wait_count) == (5, 4, 3)
    assert model.calls["training_step"] == 4 * 2  # epochs 3 and 4


def test_a_different_monitor_does_not_restore_the_state(tmp_path):
    values = [1.0, 0.9, 0.95, 0.95]
    fit(tmp_path, values, [ModelCheckpoint(dirpath=tmp_path / "ckpts"), EarlyStopping("val_loss", patience=3)],
        max_epochs=3, enable_checkpointing=True)
    callback = EarlyStopping("val_loss", patience=3, mode="max")  # another state_key
    fit(tmp_path, values, [callback], max_epochs=3, ckpt_path=tmp_path / "ckpts" / "epoch=2-step=12.ckpt")
    assert callback.wait_count == 0 and math.isinf(callback.best_score.item())


# -- mode_dict / order_dict ---------------------------------------------------------------------------------


class AbsoluteEarlyStopping(EarlyStopping):
    """A user mode added through Lightning's class attributes: smaller magnitude is better."""

    mode_dict = {**EarlyStopping.mode_dict, "min_abs": lambda current, best: torch.lt(current.abs(), best.abs())}
    order_dict = {**EarlyStopping.order_dict, "min_abs": "|<|"}


def test_mode_dict_and_order_dict_are_lightnings():
    assert EarlyStopping.mode_dict == {"min": torch.lt, "max": torch.gt}
    assert EarlyStopping.order_dict == {"min": "<", "max": ">"}
    assert EarlyStopping("val_loss", mode="max").monitor_op is torch.gt


def test_a_mode_added_to_mode_dict_drives_the_callback(tmp_path):
    # Lightning 2.6.6, same subclass and values: 4 epochs trained, stopped_epoch 3, best -1.0.
    callback = AbsoluteEarlyStopping("val_loss", mode="min_abs", patience=1)
    trainer, _ = fit(tmp_path, [-3.0, 2.0, -1.0, 4.0, 5.0, 6.0], [callback])
    assert (trainer.current_epoch, callback.stopped_epoch, float(callback.best_score)) == (4, 3, -1.0)
    with pytest.raises(MisconfigurationException, match="`mode` can be min, max, min_abs, got absolute: pass "
                                                         "`EarlyStopping\\(mode=...\\)` one of 'min', 'max', 'min_abs'"):
        AbsoluteEarlyStopping("val_loss", mode="absolute")


def test_threshold_messages_use_order_dict(tmp_path):
    callback = EarlyStopping("val_loss", stopping_threshold=1.5)
    fit(tmp_path, [-3.0, 2.0], [callback])
    assert "val_loss = -3.0 < 1.5" in callback.stopping_reason_message  # Lightning 2.6.6's comparison text
    callback = EarlyStopping("val_loss", divergence_threshold=5.0)
    fit(tmp_path, [1.0, 9.0, 1.0], [callback])
    assert "val_loss = 9.0 < 5.0" in callback.stopping_reason_message  # Lightning shows the mode's order here too
    callback = AbsoluteEarlyStopping("val_loss", mode="min_abs", stopping_threshold=1.5)
    fit(tmp_path, [-3.0, 2.0, -1.0], [callback])
    assert "val_loss = -1.0 |<| 1.5" in callback.stopping_reason_message
