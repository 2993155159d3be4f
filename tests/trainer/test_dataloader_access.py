"""`trainer.train_dataloader` / `val_dataloaders` / `test_dataloaders` / `predict_dataloaders`, and dataloader
hooks set to None. Expected values were observed with Lightning 2.6.6 running the same calls.
"""

import pytest

import fulmen as L
from fulmen.utilities.warnings import PossibleUserWarning
from helpers.tiny import TinyModule, WithDataHooks, make_loader, quiet_trainer


def _snapshot(trainer):
    return (trainer.train_dataloader, trainer.val_dataloaders, trainer.test_dataloaders, trainer.predict_dataloaders)


class Snapshots(TinyModule):
    """Records the four properties in `setup`, the first training step and the first validation step."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def setup(self, stage):
        self.seen[f"setup:{getattr(stage, 'value', stage)}"] = _snapshot(self.trainer)

    def training_step(self, batch, batch_idx):
        self.seen.setdefault("training_step", _snapshot(self.trainer))
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        key = "sanity" if self.trainer.sanity_checking else "validation_step"
        self.seen.setdefault(key, _snapshot(self.trainer))


def test_dataloader_properties_through_fit_validate_test_predict(tmp_path):
    train, val_a, val_b, val_c, test = (make_loader(16) for _ in range(5))
    predict = make_loader(16, targets=False)
    module = Snapshots()
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=1)
    assert _snapshot(trainer) == (None, None, None, None)

    trainer.fit(module, train, [val_a, val_b])
    assert module.seen["setup:fit"] == (None, None, None, None)
    assert module.seen["sanity"] == (None, [val_a, val_b], None, None)  # training data comes after the sanity check
    assert module.seen["training_step"] == (train, [val_a, val_b], None, None)
    assert _snapshot(trainer) == (train, [val_a, val_b], None, None)

    trainer.validate(module, val_c, verbose=False)
    assert module.seen["setup:validate"] == (None, None, None, None)  # a new run forgets the last one's loaders
    assert _snapshot(trainer) == (None, val_c, None, None)
    trainer.test(module, test, verbose=False)
    assert _snapshot(trainer) == (None, None, test, None)
    trainer.predict(module, predict)
    assert _snapshot(trainer) == (None, None, None, predict)


def test_val_dataloaders_keep_a_dict_shape(tmp_path):
    val_a, val_b = make_loader(16), make_loader(8)
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(Snapshots(), make_loader(16), {"a": val_a, "b": val_b})
    assert trainer.val_dataloaders == {"a": val_a, "b": val_b}


def test_val_dataloader_set_to_none_skips_validation_in_fit(tmp_path):
    module = WithDataHooks()
    module.val_dataloader = None
    with pytest.warns(PossibleUserWarning, match="You defined a `validation_step` but have no `val_dataloader`."):
        quiet_trainer(tmp_path, max_epochs=1).fit(module)
    assert module.calls["training_step"] == 2 and module.calls["validation_step"] == 0


@pytest.mark.parametrize("hook, run", [
    ("train_dataloader", lambda trainer, module: trainer.fit(module)),
    ("val_dataloader", lambda trainer, module: trainer.validate(module, verbose=False)),
    ("test_dataloader", lambda trainer, module: trainer.test(module, verbose=False)),
    ("predict_dataloader", lambda trainer, module: trainer.predict(module)),
])
def test_dataloader_hook_set_to_none_where_the_stage_needs_data_is_a_type_error(tmp_path, hook, run):
    module = WithDataHooks()
    setattr(module, hook, None)
    with pytest.raises(TypeError, match=rf"`model\.{hook}` is None.*Pass the dataloader"):
        run(quiet_trainer(tmp_path, max_epochs=1), module)


def test_datamodule_hook_set_to_none(tmp_path):
    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return make_loader(16)

        def test_dataloader(self):
            return make_loader(16)

    data = Data()
    data.test_dataloader = None
    with pytest.raises(TypeError, match=r"`datamodule\.test_dataloader` is None"):
        quiet_trainer(tmp_path).test(TinyModule(), datamodule=data, verbose=False)


def test_validation_step_set_to_none_turns_validation_off(tmp_path):
    # A common Lightning idiom: `model.validation_step = None` is a module without one.
    module = TinyModule(log_val=True)
    module.validation_step = None
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    with pytest.warns(UserWarning, match="You passed in a `val_dataloader` but have no `validation_step`. Skipping"):
        trainer.fit(module, make_loader(16), make_loader(16))
    assert trainer.num_val_batches == [] and trainer.val_dataloaders is None and not trainer.sanity_checking
