"""`fulmen.utilities.types`: the aliases users annotate hooks with, usable as Lightning's are."""

import collections.abc
import typing

import torch

import fulmen as L
from fulmen.demos.boring_classes import BoringModel
from fulmen.optimization.configure_optimizers import LRSchedulerConfig as ParsedConfig
from fulmen.utilities import types


def test_lr_scheduler_config_is_the_one_the_trainer_builds():
    assert types.LRSchedulerConfig is ParsedConfig
    model = BoringModel()
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model)
    config = trainer.lr_scheduler_configs[0]
    assert isinstance(config, types.LRSchedulerConfig)
    assert isinstance(config.scheduler, types.LRSchedulerTypeTuple)
    assert (config.interval, config.frequency, config.name, config.monitor) == ("epoch", 1, None, None)


def test_scheduler_aliases_cover_both_scheduler_families():
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    assert all(isinstance(s, types.LRSchedulerTypeTuple) for s in (plateau, step))
    assert not isinstance(optimizer, types.LRSchedulerTypeTuple)
    assert set(typing.get_args(types.LRSchedulerTypeUnion)) == set(types.LRSchedulerTypeTuple)
    assert set(typing.get_args(types.LRSchedulerPLType)) == set(types.LRSchedulerTypeTuple)
    assert typing.get_args(types.LRSchedulerType) == (type[torch.optim.lr_scheduler.LRScheduler],
                                                      type[torch.optim.lr_scheduler.ReduceLROnPlateau])


def test_step_output_and_dataloader_aliases():
    expected = {torch.Tensor, collections.abc.Mapping[str, typing.Any], type(None)}
    assert set(typing.get_args(types.STEP_OUTPUT)) == expected
    assert types.TRAIN_DATALOADERS is typing.Any and types.EVAL_DATALOADERS is typing.Any


def test_typed_dicts_describe_configure_optimizers_dicts():
    assert types.OptimizerConfig.__required_keys__ == {"optimizer"}
    assert types.OptimizerLRSchedulerConfig.__required_keys__ == {"optimizer", "lr_scheduler"}
    assert types.OptimizerLRSchedulerConfig.__optional_keys__ == {"monitor"}
    assert types.LRSchedulerConfigType.__required_keys__ == {"scheduler"}
    assert types.LRSchedulerConfigType.__optional_keys__ == {"name", "interval", "frequency", "reduce_on_plateau",
                                                             "monitor", "strict"}
    allowed = typing.get_args(types.OptimizerLRScheduler)
    assert torch.optim.Optimizer in allowed and types.OptimizerLRSchedulerConfig in allowed and type(None) in allowed


class AnnotatedModel(BoringModel):
    """A module annotated with the aliases, as user code does; the annotations must not change behaviour."""

    def training_step(self, batch, batch_idx) -> types.STEP_OUTPUT:
        return self.step(batch)

    def configure_optimizers(self) -> types.OptimizerLRScheduler:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler: types.LRSchedulerConfigType = {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1),
                                                  "interval": "step"}
        config: types.OptimizerLRSchedulerConfig = {"optimizer": optimizer, "lr_scheduler": scheduler}
        return config


def test_annotated_module_trains():
    model = AnnotatedModel()
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model)
    assert trainer.lr_scheduler_configs[0].interval == "step"
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.1 * 0.1**2


def test_distributed_data_parallel_protocol_is_structural():
    class HasNoSync(torch.nn.Module):
        def no_sync(self):
            pass

    assert isinstance(HasNoSync(), types.DistributedDataParallel)
    assert not isinstance(torch.nn.Linear(1, 1), types.DistributedDataParallel)
