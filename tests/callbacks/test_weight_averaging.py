"""WeightAveraging / EMAWeightAveraging through `Trainer.fit`, against values recorded from Lightning 2.6.6.

Same model, data and seeds as the scripts run with `lightning.pytorch`: SGD(lr 0.1, momentum 0.9), 4 batches per
epoch, validation after each epoch on the training data, a checkpoint after each epoch.
"""

import pytest
import torch

from fulmen.callbacks import EMAWeightAveraging, ModelCheckpoint, WeightAveraging
from helpers.averaging_probes import AvgModule, assert_weights, averaging_loader
from helpers.tiny import quiet_trainer

CHECKPOINT_KEYS = ["averaging_state", "callbacks", "current_model_state", "epoch", "global_step", "loops",
                   "lr_schedulers", "optimizer_states", "pytorch-lightning_version", "state_dict"]


def wa_trainer(tmp_path, callback, max_epochs=2, **flags):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, filename="{epoch}")
    return quiet_trainer(tmp_path, callbacks=[callback, checkpoints], max_epochs=max_epochs, num_sanity_val_steps=0,
                         **flags)


def wa_fit(tmp_path, callback, bn=False, max_epochs=2, ckpt_path=None, **flags):
    """Fit with validation and a checkpoint per epoch; return (module, trainer, the epoch-0 checkpoint or None)."""
    module = AvgModule(bn=bn, momentum=0.9)
    trainer = wa_trainer(tmp_path, callback, max_epochs, **flags)
    trainer.fit(module, averaging_loader(), averaging_loader(), ckpt_path=ckpt_path)
    path = tmp_path / "ckpts" / "epoch=0.ckpt"
    return module, trainer, torch.load(path, weights_only=False) if path.exists() else None


def state_sum(state):
    return sum(float(value.float().sum()) for value in state.values())


EMA_WEIGHTS = {
    "net.0.weight": ([-0.003587, 0.268756, -0.410105], -0.77618),
    "net.0.bias": ([-0.325327, -0.223832, -0.349179], -0.77761),
    "net.2.weight": ([-0.005586, -0.189002, 0.059944], -0.57657),
    "net.2.bias": ([-0.257087], -0.25709),
}


def test_ema_validates_checkpoints_and_ends_with_the_average(tmp_path):
    module, trainer, checkpoint = wa_fit(tmp_path, EMAWeightAveraging())
    assert_weights(module, EMA_WEIGHTS)
    # Validation runs with the averaged weights (the first layer's weight sum as validation_step saw it).
    assert module.val_weight_sums == pytest.approx([-0.778857, -0.776178], abs=1e-5)
    assert float(trainer.callback_metrics["val_loss"]) == pytest.approx(0.524234, abs=1e-5)
    assert trainer.global_step == 8
    assert sorted(checkpoint) == CHECKPOINT_KEYS
    assert checkpoint["callbacks"]["EMAWeightAveraging"] == {"latest_update_step": 4}
    assert {key: int(value) for key, value in checkpoint["averaging_state"].items()} == {"n_averaged": 4}
    # `state_dict` holds the average, `current_model_state` the weights being trained.
    assert sorted(checkpoint["state_dict"]) == ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"]
    assert state_sum(checkpoint["state_dict"]) == pytest.approx(-2.39007, abs=1e-4)
    assert state_sum(checkpoint["current_model_state"]) == pytest.approx(-2.00639, abs=1e-4)
    loaded = AvgModule.load_from_checkpoint(tmp_path / "ckpts" / "epoch=0.ckpt")
    assert state_sum(loaded.state_dict()) == pytest.approx(-2.39007, abs=1e-4)


@pytest.mark.parametrize(("make", "bn"), [(EMAWeightAveraging, False), (WeightAveraging, True)])
def test_resuming_gives_the_uninterrupted_result(tmp_path, make, bn):
    uninterrupted, _, _ = wa_fit(tmp_path / "a", make(), bn=bn)
    wa_fit(tmp_path / "b", make(), bn=bn, max_epochs=1)
    resumed, trainer, _ = wa_fit(tmp_path / "b", make(), bn=bn, ckpt_path=tmp_path / "b" / "ckpts" / "epoch=0.ckpt")
    assert trainer.global_step == 8
    for name, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)


def test_validate_from_a_checkpoint_uses_the_average_and_warns(tmp_path):
    wa_fit(tmp_path, EMAWeightAveraging(), max_epochs=1)
    trainer = quiet_trainer(tmp_path, callbacks=[EMAWeightAveraging()])
    with pytest.warns(UserWarning, match="outside `fit`"):
        results = trainer.validate(AvgModule(), averaging_loader(), ckpt_path=tmp_path / "ckpts" / "epoch=0.ckpt",
                                   verbose=False)
    assert results[0]["val_loss"] == pytest.approx(0.525666, abs=1e-5)


def test_plain_average_of_every_step(tmp_path):
    module, _, checkpoint = wa_fit(tmp_path, WeightAveraging())
    assert_weights(module, {
        "net.0.weight": ([-0.015511, 0.29498, -0.375242], -0.34839),
        "net.0.bias": ([-0.327544, -0.206662, -0.331678], -0.99467),
        "net.2.weight": ([0.24298, -0.207989, 0.075877], -0.26682),
        "net.2.bias": ([-0.322215], -0.32222),
    })
    assert module.val_weight_sums == pytest.approx([-0.588591, -0.34839], abs=1e-5)
    assert checkpoint["callbacks"]["WeightAveraging"] == {"latest_update_step": 4}
    assert state_sum(checkpoint["state_dict"]) == pytest.approx(-2.13087, abs=1e-4)


class ByEpoch(WeightAveraging):
    def __init__(self):
        super().__init__()
        self.calls = []

    def should_update(self, step_idx=None, epoch_idx=None):
        self.calls.append((step_idx, epoch_idx))
        return epoch_idx is not None


def test_should_update_is_asked_after_each_step_and_epoch(tmp_path):
    callback = ByEpoch()
    module, trainer, checkpoint = wa_fit(tmp_path, callback, max_epochs=3)
    assert callback.calls[:12] == [(0, None), (1, None), (2, None), (3, None), (None, 0), (4, None), (5, None),
                                   (6, None), (7, None), (None, 1), (8, None), (9, None)]
    assert_weights(module, {
        "net.0.weight": ([-0.033924, 0.374769, -0.305209], 0.0651),
        "net.0.bias": ([-0.313917, -0.198881, -0.321329], -1.17143),
        "net.2.weight": ([0.447258, -0.216489, 0.091894], 0.09806),
        "net.2.bias": ([-0.327289], -0.32729),
    })
    # Epoch updates are not counted in the callback's state (only `latest_update_step` is saved).
    assert checkpoint["callbacks"]["ByEpoch"] == {"latest_update_step": 0}
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 1


def test_ema_update_schedule(tmp_path):
    callback = EMAWeightAveraging(decay=0.5, update_every_n_steps=2, update_starting_at_step=3,
                                  update_starting_at_epoch=1)
    module, _, checkpoint = wa_fit(tmp_path, callback, max_epochs=3)
    assert_weights(module, {
        "net.0.weight": ([-0.040492, 0.438783, -0.262356], 0.37086),
        "net.0.bias": ([-0.301335, -0.193385, -0.3141], -1.29773),
        "net.2.weight": ([0.598315, -0.223489, 0.109204], 0.39921),
        "net.2.bias": ([-0.316401], -0.3164),
    })
    assert module.val_weight_sums == pytest.approx([-0.778832, -0.161608, 0.211683], abs=1e-5)
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 0


def test_buffers_kept_out_of_the_average(tmp_path):
    module, _, checkpoint = wa_fit(tmp_path, EMAWeightAveraging(use_buffers=False), bn=True)
    assert_weights(module, {
        "net.0.weight": ([-0.006554, 0.267066, -0.411407], -0.95479),
        "net.0.bias": ([-0.32409, -0.230166, -0.34932], -0.76848),
        "net.1.weight": ([0.999052, 1.006875, 0.998307], 8.01214),
        "net.1.bias": ([-0.000783, 0.00784, -0.002971], 0.02781),
        "net.1.running_mean": ([-0.065053, -0.259494, -0.182974], -0.51621),
        "net.1.running_var": ([0.741592, 0.59614, 0.620038], 4.97354),
        "net.1.num_batches_tracked": ([8], 8),
        "net.3.weight": ([-0.013597, -0.219405, 0.035667], -0.64798),
        "net.3.bias": ([-0.22429], -0.22429),
    })
    assert state_sum(checkpoint["state_dict"]) == pytest.approx(15.20841, abs=1e-4)
    assert state_sum(checkpoint["current_model_state"]) == pytest.approx(15.36886, abs=1e-4)


def test_updates_follow_optimizer_steps_under_accumulation(tmp_path):
    module, trainer, checkpoint = wa_fit(tmp_path, EMAWeightAveraging(decay=0.5), accumulate_grad_batches=3)
    assert_weights(module, {
        "net.0.weight": ([-0.00071, 0.271039, -0.414358], -0.64975),
        "net.0.bias": ([-0.321895, -0.221919, -0.342561], -0.83626),
        "net.2.weight": ([0.113736, -0.192222, 0.067313], -0.46305),
        "net.2.bias": ([-0.284439], -0.28444),
    })
    assert trainer.global_step == 4
    assert checkpoint["callbacks"]["EMAWeightAveraging"] == {"latest_update_step": 2}


def test_resuming_from_a_checkpoint_without_averaging_warns(tmp_path):
    plain = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    plain.fit(AvgModule(), averaging_loader())
    plain.save_checkpoint(tmp_path / "plain.ckpt")
    with pytest.warns(UserWarning, match="not saved with WeightAveraging"):
        wa_fit(tmp_path, EMAWeightAveraging(), ckpt_path=tmp_path / "plain.ckpt")


class BuildsLayersLate(AvgModule):
    def __init__(self):
        super().__init__()
        self.configured = 0

    def configure_model(self):
        self.configured += 1


def test_configure_model_is_called_before_copying_and_warns(tmp_path):
    module = BuildsLayersLate()
    trainer = quiet_trainer(tmp_path, callbacks=[WeightAveraging()], max_epochs=1, limit_val_batches=0)
    with pytest.warns(UserWarning, match="configure_model"):
        trainer.fit(module, averaging_loader())
    assert module.configured == 2  # by the callback, then by the Trainer (as Lightning)


def test_ema_refuses_an_avg_fn():
    with pytest.raises(TypeError, match="decay"):
        EMAWeightAveraging(avg_fn=lambda average, current, count: current)
