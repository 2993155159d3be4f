"""`Trainer(sync_batchnorm=True)` / `plugins=[TorchSyncBatchNorm()]` and the layer conversion itself.
The synchronised statistics across two processes are checked in `tests/strategies/test_ddp_features.py`."""

import pytest
import torch
from torch import nn

import fulmen as L
from fulmen.plugins import LayerSync, TorchSyncBatchNorm
from fulmen.plugins.layer_sync import CPUSyncBatchNorm
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, make_loader


class NoSync(LayerSync):
    def apply(self, model):
        return model

    def revert(self, model):
        return model


def trainer(**flags):
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False, **flags)


class BatchNormModule(TinyModule):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.norm(self.layer(x))


def test_sync_batchnorm_flag_installs_torch_sync_batchnorm_on_ddp():
    assert isinstance(trainer(devices=2, strategy="ddp", sync_batchnorm=True).strategy._layer_sync,
                      TorchSyncBatchNorm)
    assert trainer(devices=2, strategy="ddp").strategy._layer_sync is None


def test_layer_sync_plugin_is_installed():
    plugin = NoSync()
    assert trainer(devices=2, strategy="ddp", plugins=[plugin]).strategy._layer_sync is plugin


def test_sync_batchnorm_with_another_layer_sync_plugin_is_refused():
    with pytest.raises(MisconfigurationException, match="keep only one layer-sync plugin"):
        trainer(devices=2, strategy="ddp", sync_batchnorm=True, plugins=[NoSync()])


def test_sync_batchnorm_on_one_device_trains_as_usual():
    # Lightning 2.6.6: "This plugin has no effect in single-device operation" - one process sees the whole batch.
    model = BatchNormModule()
    trainer(sync_batchnorm=True, max_epochs=1).fit(model, make_loader())
    assert type(model.norm) is nn.BatchNorm1d
    assert int(model.norm.num_batches_tracked) == 8


def test_conversion_shares_tensors_and_reverts_to_the_original_classes():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
    weight, running_mean = model[1].weight, model[1].running_mean
    keys = list(model.state_dict())
    converted = TorchSyncBatchNorm().apply(model)
    assert type(converted[1]) is CPUSyncBatchNorm and type(converted[2][1]) is CPUSyncBatchNorm
    assert converted[1].weight is weight and converted[1].running_mean is running_mean
    assert list(converted.state_dict()) == keys
    reverted = TorchSyncBatchNorm().revert(converted)
    assert type(reverted[1]) is nn.BatchNorm2d and type(reverted[2][1]) is nn.BatchNorm1d
    assert reverted[1].weight is weight


@pytest.mark.parametrize("training", [True, False])
def test_cpu_sync_batchnorm_without_a_process_group_is_plain_batchnorm(training):
    reference = nn.BatchNorm2d(3, momentum=None)
    synced = TorchSyncBatchNorm().apply(nn.Sequential(nn.BatchNorm2d(3, momentum=None)))[0]
    x = torch.randn(4, 3, 5, 5)
    reference.train(training)
    synced.train(training)
    torch.testing.assert_close(synced(x), reference(x))
    torch.testing.assert_close(synced.running_var, reference.running_var)
