"""Something that is not a dataloader (an int, a Dataset) fails at once, naming the argument or hook and the fix."""

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import fulmen as L
from helpers.tiny import RandomDataset, TinyModule, make_loader, quiet_trainer


class Stream(IterableDataset):
    def __iter__(self):
        return iter(torch.randn(8, 32))


class PredictingModule(TinyModule):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0])


ENTRY_POINTS = [
    ("fit", "train_dataloaders", lambda trainer, model, bad: trainer.fit(model, bad)),
    ("fit", "val_dataloaders", lambda trainer, model, bad: trainer.fit(model, make_loader(16), bad)),
    ("validate", "dataloaders", lambda trainer, model, bad: trainer.validate(model, bad)),
    ("test", "dataloaders", lambda trainer, model, bad: trainer.test(model, dataloaders=bad)),
    ("predict", "dataloaders", lambda trainer, model, bad: trainer.predict(model, bad)),
]


@pytest.mark.parametrize("fn, argument, call", ENTRY_POINTS, ids=[f"{f}-{a}" for f, a, _ in ENTRY_POINTS])
def test_an_int_instead_of_a_dataloader_names_the_argument(tmp_path, fn, argument, call):
    model = PredictingModule()
    with pytest.raises(TypeError, match=rf"`Trainer\.{fn}\({argument}=\.\.\.\)` received 5 \(int\), which is not a "
                                        r"dataloader\. Pass a `torch\.utils\.data\.DataLoader`"):
        call(quiet_trainer(tmp_path, max_epochs=1), model, 5)
    assert sum(model.calls.values()) == 0


@pytest.mark.parametrize("dataset", [RandomDataset(16), Stream()], ids=["map_style", "iterable"])
@pytest.mark.parametrize("fn, argument, call", ENTRY_POINTS, ids=[f"{f}-{a}" for f, a, _ in ENTRY_POINTS])
def test_a_dataset_instead_of_a_dataloader_names_the_argument_and_says_wrap_it(tmp_path, fn, argument, call, dataset):
    model = PredictingModule()
    with pytest.raises(TypeError, match=rf"`Trainer\.{fn}\({argument}=\.\.\.\)` received a {type(dataset).__name__}, "
                                        r"which is a Dataset, not a DataLoader.*`DataLoader\(dataset, batch_size="):
        call(quiet_trainer(tmp_path, max_epochs=1), model, dataset)
    assert sum(model.calls.values()) == 0


def test_a_path_or_a_datamodule_in_a_dataloader_argument_says_what_to_pass(tmp_path):
    with pytest.raises(TypeError, match=r"`Trainer\.fit\(train_dataloaders=\.\.\.\)` received 'data\.csv' \(str\)"):
        quiet_trainer(tmp_path).fit(TinyModule(), "data.csv")
    with pytest.raises(TypeError, match=r"`Trainer\.fit\(val_dataloaders=\.\.\.\)` received a LightningDataModule "
                                        r"\(DatasetReturningDataModule\); pass it as `datamodule=`"):
        quiet_trainer(tmp_path).fit(TinyModule(), make_loader(16), DatasetReturningDataModule())


def test_a_dataset_inside_a_list_of_dataloaders_is_found(tmp_path):
    with pytest.raises(TypeError, match=r"`Trainer\.validate\(dataloaders=\.\.\.\)` received a RandomDataset"):
        quiet_trainer(tmp_path).validate(TinyModule(), [make_loader(16), RandomDataset(16)])


class DatasetReturningDataModule(L.LightningDataModule):
    def train_dataloader(self):
        return RandomDataset(16)


class IntReturningDataModule(L.LightningDataModule):
    def val_dataloader(self):
        return {"a": make_loader(16), "b": 3}


def test_datamodule_hooks_returning_a_dataset_or_an_int_name_the_hook(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    with pytest.raises(TypeError, match=r"`train_dataloader\(\)` returned a RandomDataset, which is a Dataset"):
        trainer.fit(TinyModule(), datamodule=DatasetReturningDataModule())
    with pytest.raises(TypeError, match=r"`val_dataloader\(\)` returned 3 \(int\), which is not a dataloader"):
        quiet_trainer(tmp_path).validate(TinyModule(), datamodule=IntReturningDataModule())


class Batches:
    """Not a DataLoader, but an iterable of batches."""

    def __iter__(self):
        return iter([(torch.randn(4, 32), torch.randint(0, 2, (4,))) for _ in range(3)])

    def __len__(self):
        return 3


def test_real_dataloaders_and_plain_iterables_of_batches_still_work(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(TinyModule(), Batches(), DataLoader(RandomDataset(8), batch_size=4))
    assert trainer.global_step == 3
    assert len(trainer.predict(PredictingModule(), [make_loader(8), make_loader(8)])) == 2
