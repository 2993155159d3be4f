"""The boring demo classes, run through the Trainer the way bug reports use them.

Expected numbers were recorded by running the same scripts with Lightning 2.6.6 (same torch, same seeds), so
these tests check that a script written against Lightning's boring classes sees the same values here.
"""

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as L
import fulmen.demos
from fulmen.demos.boring_classes import (
    BoringDataModule,
    BoringDataModuleNoLen,
    BoringModel,
    DemoModel,
    IterableBoringDataModule,
    ManualOptimBoringModel,
    Net,
    RandomDataset,
    RandomDictDataset,
    RandomIterableDataset,
    RandomIterableDatasetWithLen,
)

TOL = {"rtol": 1e-5, "atol": 1e-6}


def quiet_trainer(**flags):
    # On the CPU, where the expected values were recorded (a GPU's kernels round differently).
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **flags)


def assert_close(actual, expected):
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), **TOL)


def test_demos_package_exports_the_boring_classes():
    assert fulmen.demos.BoringModel is BoringModel
    assert fulmen.demos.BoringDataModule is BoringDataModule
    assert fulmen.demos.DemoModel is DemoModel
    assert {"BoringModel", "BoringDataModule", "DemoModel"} <= set(dir(fulmen.demos))


def test_random_dataset_draws_its_rows_once():
    L.seed_everything(3, verbose=False)
    dataset = RandomDataset(5, 7)
    assert len(dataset) == 7 and dataset.len == 7
    assert dataset[2].shape == (5,)
    assert torch.equal(dataset[2], dataset[2])
    torch.manual_seed(3)
    assert torch.equal(dataset.data, torch.randn(7, 5))


def test_random_dict_dataset_items_are_a_and_a_plus_two():
    L.seed_everything(3, verbose=False)
    dataset = RandomDictDataset(4, 3)
    assert len(dataset) == 3
    item = dataset[1]
    assert set(item) == {"a", "b"}
    assert_close(item["a"], [0.04618244990706444, -1.3682591915130615, 0.3374950885772705, 1.0111159086227417])
    assert_close(item["b"], item["a"] + 2)


def test_random_iterable_datasets():
    without_len = RandomIterableDataset(3, 4)
    assert not hasattr(without_len, "__len__")
    rows = list(without_len)
    assert len(rows) == 4 and all(row.shape == (3,) for row in rows)
    assert not torch.equal(rows[0], next(iter(without_len)))  # fresh draws on every pass

    L.seed_everything(3, verbose=False)
    with_len = RandomIterableDatasetWithLen(3, 4)
    assert len(with_len) == 4
    rows = list(with_len)
    assert len(rows) == 4
    assert_close(rows[0], [0.8032760620117188, 0.17483338713645935, 0.08897809684276581])


def test_boring_model_fit_validate_test_predict():
    L.seed_everything(7, verbose=False)
    model = BoringModel()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2)
    trainer.fit(model)
    assert trainer.global_step == 8
    assert_close(model.layer.weight.detach().flatten()[:4],
                 [0.006473480723798275, -0.06270011514425278, 0.06323187053203583, -0.09754638373851776])
    # SGD(lr=0.1) with StepLR(step_size=1, gamma=0.1) stepped after each of the two epochs.
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.StepLR)
    # The steps log nothing, so validate/test return one empty dict per dataloader.
    assert trainer.validate(model, verbose=False) == [{}]
    assert trainer.test(model, verbose=False) == [{}]
    predictions = trainer.predict(model)
    assert len(predictions) == 64 and predictions[0].shape == (1, 2)
    assert_close(predictions[0].flatten(), [0.3197721838951111, 0.0735669881105423])


def test_boring_model_step_outputs():
    model = BoringModel()
    batch = torch.randn(3, 32)
    expected = torch.nn.functional.mse_loss(model(batch), torch.ones(3, 2))
    train_out, val_out, test_out = model.training_step(batch, 0), model.validation_step(batch, 0), \
        model.test_step(batch, 0)
    assert set(train_out) == {"loss"} and set(val_out) == {"x"} and set(test_out) == {"y"}
    for value in (train_out["loss"], val_out["x"], test_out["y"]):
        assert_close(value, expected)
    labels = torch.zeros(3, 2)
    assert_close(model.loss(model(batch), labels), model(batch).pow(2).mean())
    for hook in ("train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader"):
        loader = getattr(model, hook)()
        assert isinstance(loader, DataLoader) and loader.batch_size == 1 and len(loader) == 64


def test_boring_datamodule_splits_one_dataset_in_four_blocks():
    L.seed_everything(7, verbose=False)
    datamodule = BoringDataModule()
    model = BoringModel()
    trainer = quiet_trainer(max_steps=3, limit_val_batches=2)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.num_training_batches == 64 and trainer.num_val_batches == [2]
    assert_close(model.layer.weight.detach().flatten()[:4],
                 [-0.0323677659034729, 0.004440115764737129, 0.06038293242454529, 0.31853151321411133])
    predictions = trainer.predict(model, datamodule=datamodule)
    assert len(predictions) == 64
    assert_close(predictions[0].flatten(), [-1.5262763500213623, -0.355158269405365])
    # Each stage reads its own block of the 256 rows drawn at construction.
    full = datamodule.random_full.data
    assert torch.equal(datamodule.random_train[0], full[0])
    assert torch.equal(datamodule.random_val[0], full[64])
    assert torch.equal(datamodule.random_predict[0], full[192])
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert torch.equal(datamodule.random_test[0], full[128]) and len(datamodule.random_test) == 64


def test_boring_datamodule_no_len_trains_on_an_unsized_loader():
    L.seed_everything(7, verbose=False)
    model = BoringModel()
    trainer = quiet_trainer(max_steps=3, limit_val_batches=2)
    trainer.fit(model, datamodule=BoringDataModuleNoLen())
    assert trainer.num_training_batches == float("inf")
    assert trainer.global_step == 3
    assert_close(model.layer.weight.detach().flatten()[:2], [-0.06378746032714844, -0.20847757160663605])


class FourFeatureModel(BoringModel):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("v", self.step(batch))

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("t", self.step(batch))

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch)


def test_iterable_boring_datamodule_gives_two_loaders_per_stage():
    L.seed_everything(3, verbose=False)
    datamodule, model = IterableBoringDataModule(), FourFeatureModel()
    trainer = quiet_trainer(limit_val_batches=3)
    results = trainer.validate(model, datamodule=datamodule, verbose=False)
    assert trainer.num_val_batches == [3, 3]
    assert list(results[0]) == ["v/dataloader_idx_0"] and list(results[1]) == ["v/dataloader_idx_1"]
    assert results[0]["v/dataloader_idx_0"] == pytest.approx(0.7134818434715271, rel=1e-5)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    assert trainer.num_test_batches == [64, float("inf")]
    assert results[1]["t/dataloader_idx_1"] == pytest.approx(0.7651227712631226, rel=1e-5)
    predictions = trainer.predict(model, datamodule=datamodule)
    assert [len(p) for p in predictions] == [128, 128]
    assert_close(predictions[0][0].flatten(), [0.1984487920999527, 0.22926345467567444])


def test_iterable_boring_datamodule_fits_with_combined_train_loaders():
    # As in Lightning, the two train loaders are cycled together: training_step gets a list of two batches.
    class Combined(FourFeatureModel):
        def training_step(self, batch, batch_idx):
            self.batch_shapes = [tuple(part.shape) for part in batch]
            return super().training_step(torch.cat(batch), batch_idx)

    model = Combined()
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, datamodule=IterableBoringDataModule())
    assert trainer.global_step == 1 and model.batch_shapes == [(1, 4), (1, 4)]


def test_manual_optim_boring_model_steps_itself():
    L.seed_everything(7, verbose=False)
    model = ManualOptimBoringModel()
    assert model.automatic_optimization is False
    trainer = quiet_trainer(max_steps=5)
    trainer.fit(model)
    assert trainer.global_step == 5
    assert_close(model.layer.weight.detach().flatten()[:4],
                 [-0.03948178514838219, -0.014309942722320557, 0.091062992811203, -0.1584712564945221])


def test_demo_model_minimises_the_output_sum_with_adam():
    model = DemoModel(out_dim=3, learning_rate=0.5)
    assert model.l1.out_features == 3 and model.learning_rate == 0.5
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 0.5
    batch = torch.randn(2, 4, 8)  # flattened to 32 features
    assert model(batch).shape == (2, 3) and (model(batch) >= 0).all()
    assert_close(model.training_step(batch, 0), model(batch).sum())

    L.seed_everything(7, verbose=False)
    model = DemoModel()
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=DataLoader(RandomDataset(32, 8), batch_size=2))
    assert_close(model.l1.weight.detach().flatten()[:4],
                 [-0.016504991799592972, -0.07455696910619736, 0.06770835071802139, 0.06342911720275879])


def test_net_classifies_28x28_images_into_ten_log_probabilities():
    L.seed_everything(7, verbose=False)
    net = Net().eval()
    output = net(torch.randn(2, 1, 28, 28))
    assert output.shape == (2, 10)
    assert_close(output.exp().sum(dim=1), [1.0, 1.0])
    assert_close(output.flatten()[:3], [-2.3959603309631348, -2.1569981575012207, -2.3531653881073])
