"""BasePredictionWriter: what `write_on_batch_end` / `write_on_epoch_end` receive, per write interval.
Expected values recorded from Lightning 2.6.6 with the same dataset (0..4), loaders and seeds."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import BasePredictionWriter
from fulmen.callbacks.prediction_writer import BasePredictionWriter as FromModule
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import quiet_trainer


class Recorder(BasePredictionWriter):
    def __init__(self, write_interval):
        super().__init__(write_interval)
        self.batches, self.epochs = [], []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.batches.append((prediction.flatten().tolist(), batch_indices, batch_idx, dataloader_idx))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        self.epochs.append((_plain(predictions), batch_indices))


def _plain(value):
    return value.flatten().tolist() if torch.is_tensor(value) else [_plain(item) for item in value]


class Identity(L.LightningModule):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return batch[0] * 1


DATA = TensorDataset(torch.arange(5.0).unsqueeze(1))
BATCHES = [([0.0, 1.0], [0, 1], 0, 0), ([2.0, 3.0], [2, 3], 1, 0), ([4.0], [4], 2, 0)]
EPOCH = ([[0.0, 1.0], [2.0, 3.0], [4.0]], [[[0, 1], [2, 3], [4]]])


def predict(tmp_path, writer, loaders, **options):
    return quiet_trainer(tmp_path, callbacks=[writer]).predict(Identity(), loaders, **options)


@pytest.mark.parametrize(("interval", "batches", "epochs"), [
    ("batch", BATCHES, []), ("epoch", [], [EPOCH]), ("batch_and_epoch", BATCHES, [EPOCH])])
def test_write_interval_chooses_the_calls(tmp_path, interval, batches, epochs):
    writer = Recorder(interval)
    returned = predict(tmp_path, writer, DataLoader(DATA, batch_size=2))
    assert (writer.batches, writer.epochs) == (batches, epochs)
    assert _plain(returned) == EPOCH[0]


def test_several_loaders_and_a_shuffled_sampler_give_the_drawn_indices(tmp_path):
    writer = Recorder("batch_and_epoch")
    shuffled = DataLoader(DATA, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert predict(tmp_path, writer, [DataLoader(DATA, batch_size=2), shuffled], return_predictions=False) is None
    assert writer.batches == BATCHES + [([3.0, 1.0, 0.0], [3, 1, 0], 0, 1), ([4.0, 2.0], [4, 2], 1, 1)]
    assert writer.epochs == [([[[0.0, 1.0], [2.0, 3.0], [4.0]], [[3.0, 1.0, 0.0], [4.0, 2.0]]],
                              [[[0, 1], [2, 3], [4]], [[3, 1, 0], [4, 2]]])]


def test_epoch_writer_gets_predictions_without_return_predictions_and_only_the_limited_batches(tmp_path):
    writer = Recorder("epoch")
    assert predict(tmp_path, writer, DataLoader(DATA, batch_size=2), return_predictions=False) is None
    assert writer.epochs == [EPOCH]
    writer = Recorder("epoch")
    trainer = quiet_trainer(tmp_path, callbacks=[writer], limit_predict_batches=2)
    assert _plain(trainer.predict(Identity(), DataLoader(DATA, batch_size=2))) == [[0.0, 1.0], [2.0, 3.0]]
    assert writer.epochs == [([[0.0, 1.0], [2.0, 3.0]], [[[0, 1], [2, 3]]])]
    assert trainer.predict_loop.epoch_batch_indices == []  # cleared when predict ends, as in Lightning


def test_a_loader_without_a_batch_sampler_gives_empty_indices_with_a_warning(tmp_path):
    writer = Recorder("batch_and_epoch")
    with pytest.warns(UserWarning, match="Couldn't infer the batch indices fetched from your dataloader: `DataLoader`"):
        predict(tmp_path, writer, DataLoader(TensorDataset(torch.arange(2.0).unsqueeze(1)), batch_size=None))
    assert writer.batches == [([0.0], [], 0, 0), ([1.0], [], 1, 0)] and writer.epochs == [([[0.0], [1.0]], [[]])]


def test_an_iterable_dataset_predicts_with_empty_indices(tmp_path):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.tensor([float(index)]),) for index in range(3)])

    writer = Recorder("batch")
    with pytest.warns(UserWarning, match="Couldn't infer the batch indices"):
        predict(tmp_path, writer, DataLoader(Stream(), batch_size=2))
    assert writer.batches == [([0.0, 1.0], [], 0, 0), ([2.0], [], 1, 0)]


def test_unknown_interval_and_missing_overrides_are_clear_errors(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"`write_interval` should be one of \['batch', 'epoch', "
                                                         r"'batch_and_epoch'\]; received 'never'"):
        BasePredictionWriter("never")
    assert BasePredictionWriter is FromModule and BasePredictionWriter().interval == "batch"
    with pytest.raises(NotImplementedError, match="write_on_batch_end"):
        predict(tmp_path, BasePredictionWriter(), DataLoader(DATA, batch_size=2))
    with pytest.raises(NotImplementedError, match="write_on_epoch_end"):
        predict(tmp_path, BasePredictionWriter("epoch"), DataLoader(DATA, batch_size=2))
