"""SpikeDetection: which loss sequences stop training, the skip-batches file, and the checkpoint state.
Each case's outcome was recorded with Lightning 2.6.6 (same losses, one batch per loss)."""

import json
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import SpikeDetection
from fulmen.callbacks.spike import TrainingSpikeException
from fulmen.trainer.state import TrainerStatus
from helpers.tiny import quiet_trainer

INF, NAN = math.inf, math.nan


class ScriptedLoss(L.LightningModule):
    """Returns `losses[batch_idx]` (with a graph, so backward runs) for each batch."""

    def __init__(self, losses):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.losses = losses
        self.seen = 0

    def training_step(self, batch, batch_idx):
        self.seen += 1
        return self.layer.weight.sum() * 0 + self.losses[batch_idx]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(tmp_path, losses, max_epochs=1, **options):
    callback = SpikeDetection(**options)
    module = ScriptedLoss(losses)
    trainer = quiet_trainer(tmp_path, max_epochs=max_epochs, callbacks=[callback])
    try:
        trainer.fit(module, DataLoader(TensorDataset(torch.zeros(len(losses), 1)), batch_size=1))
        spike = None
    except TrainingSpikeException as error:
        spike = str(error)
    return spike, module.seen, callback, trainer


STEADY = [1.0, 1.0, 1.0, 0.9]
CASES = [  # (options, losses, spiking batch or None) as Lightning 2.6.6 decided
    ({}, STEADY + [3.5, 1.0], 4),
    ({}, STEADY + [2.9, 1.0], None),  # 2.9 - 0.975 < 2 * 0.975
    ({"rtol": 1.0}, STEADY + [2.9, 1.0], 4),
    ({}, [1.0, 5.0, 1.0], 1),
    ({"warmup": 2}, [1.0, 5.0, 1.0], None),
    ({}, [5.0, 1.0, 1.0], None),  # batch 0 is never checked; a drop is an improvement
    ({}, [1.0, 1.0, NAN, 1.0], 2),
    ({"finite_only": False}, [1.0, 1.0, NAN, 1.0], None),
    ({"finite_only": False}, [1.0, 1.0, INF, 1.0], 2),
    ({"atol": 3.0}, STEADY + [3.5, 1.0], None),
    ({"atol": 2.0, "rtol": None}, STEADY + [3.5, 1.0], 4),
    ({"atol": None, "rtol": None}, STEADY + [3.5, 1.0], 4),
    ({"mode": "max"}, [10.0, 10.0, 10.0, 2.0, 1.0], None),
    ({"mode": "max"}, [10.0, 10.0, 10.0, 40.0, 1.0], None),  # a rise is an improvement
    ({"window": 3}, [1.0] * 5 + [2.0] * 4 + [7.0], 9),
    ({}, [1.0, 1.0, -3.0, 1.0], 3),  # the tolerance uses |rtol * mean| for a negative mean
    ({}, [-1.0, -1.0, -0.2, 1.0], 3),
]


@pytest.mark.parametrize(("options", "losses", "spike_at"), CASES)
def test_spike_decisions_match_lightning(tmp_path, options, losses, spike_at):
    spike, seen, callback, trainer = _fit(tmp_path, losses, **options)
    if spike_at is None:
        assert spike is None and seen == len(losses) and callback.bad_batches == []
        assert not (tmp_path / "skip_batches.json").exists()
    else:
        assert spike == f"Training spike detected in batch {spike_at}"
        assert seen == spike_at + 1 and trainer.state.status == TrainerStatus.INTERRUPTED
        assert json.loads((tmp_path / "skip_batches.json").read_text()) == [spike_at - 1, spike_at]
        assert callback.bad_batches == [spike_at - 1, spike_at]
    assert callback.exclude_batches_path == str(tmp_path / "skip_batches.json")


def test_window_and_last_value_carry_over_epochs(tmp_path):
    spike, _, callback, _ = _fit(tmp_path, [1.0, 1.0, 1.0, 3.5], max_epochs=2)
    assert spike == "Training spike detected in batch 3"
    spike, seen, callback, _ = _fit(tmp_path, [2.0, 1.0, 1.0], max_epochs=2)
    assert spike is None and seen == 6 and float(callback.last_val) == 1.0


@pytest.mark.parametrize(("given", "written"), [("dir", "dir/skip_batches.json"), ("out/x.json", "out/x.json")])
def test_exclude_batches_path_is_a_directory_or_a_json_file(tmp_path, given, written):
    spike, _, callback, _ = _fit(tmp_path, [1.0] * 5 + [2.0] * 4 + [7.0], window=3,
                                 exclude_batches_path=tmp_path / given)
    assert spike == "Training spike detected in batch 9"
    assert json.loads((tmp_path / written).read_text()) == [8, 9]
    assert str(callback.exclude_batches_path) == str(tmp_path / written)


def test_invalid_mode_is_refused():
    with pytest.raises(ValueError, match="Invalid mode. Has to be min or max, found avg"):
        SpikeDetection(mode="avg")


def test_state_dict_and_resume_keep_the_running_window(tmp_path):
    _, _, callback, trainer = _fit(tmp_path, STEADY)
    state = callback.state_dict()
    assert state["last_val"] == pytest.approx(0.9) and state["bad_batches"] == []
    assert (state["mode"], state["warmup"], state["atol"], state["rtol"]) == ("min", 1, None, 2.0)
    assert state["bad_batches_path"] == str(tmp_path / "skip_batches.json")
    trainer.save_checkpoint(tmp_path / "spike.ckpt")
    assert torch.load(tmp_path / "spike.ckpt", weights_only=False)["callbacks"]["SpikeDetection"]["last_val"] == \
        pytest.approx(0.9)
    # Lightning 2.6.6 fails to load this state (AttributeError); fulmen restores the window: mean 0.975.
    restored = SpikeDetection()
    restored.load_state_dict(state)
    assert restored.last_val == pytest.approx(0.9) and len(restored.running_mean) == 4
    assert not restored._is_spike(torch.tensor(2.9)) and restored._is_spike(torch.tensor(3.0))


def test_outputs_without_a_loss_are_refused(tmp_path):
    class Manual(ScriptedLoss):
        def __init__(self):
            super().__init__([1.0, 1.0])
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None  # on_train_batch_end gets an empty dict

    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[SpikeDetection()])
    with pytest.raises(KeyError, match="returned no 'loss'"):
        trainer.fit(Manual(), DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1))
