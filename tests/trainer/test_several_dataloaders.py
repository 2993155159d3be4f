"""fit with several training dataloaders, and validate/test/predict with a CombinedLoader.

Every expected sequence was produced by Lightning 2.6.6 running the same script (training batches, batch
counts, the `trainer.*_dataloader(s)` properties).
"""

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.demos.boring_classes import BoringModel, IterableBoringDataModule
from fulmen.utilities import CombinedLoader
from helpers.tiny import quiet_trainer


def _plain(x):
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.flatten().tolist()]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


class Recorder(BoringModel):
    val_dataloader = None
    train_dataloader = None
    validation_step = None

    def __init__(self):
        super().__init__()
        self.seen, self.val_seen = [], []

    def training_step(self, batch, batch_idx):
        self.seen.append((batch_idx, _plain(batch)))
        return self.layer(torch.ones(1, 32)).sum()


class ValRecorder(Recorder):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.val_seen.append((batch_idx, dataloader_idx, _plain(batch)))


def _dl(n):
    return DataLoader(torch.arange(n).float(), batch_size=1)


def _fit(tmp_path, train, val=None, **flags):
    module = Recorder() if val is None else ValRecorder()
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = quiet_trainer(tmp_path, max_epochs=flags.pop("max_epochs", 1), **flags)
    trainer.fit(module, train, val)
    return module, trainer


CYCLE = [(0, {"a": [0], "b": [0]}), (1, {"a": [1], "b": [1]}), (2, {"a": [2], "b": [2]}),
         (3, {"a": [0], "b": [3]}), (4, {"a": [1], "b": [4]})]


def test_dict_of_train_loaders_is_combined_max_size_cycle(tmp_path):
    module, trainer = _fit(tmp_path, {"a": _dl(3), "b": _dl(5)})
    assert module.seen == CYCLE
    assert trainer.num_training_batches == 5
    assert isinstance(trainer.train_dataloader, dict) and list(trainer.train_dataloader) == ["a", "b"]
    assert all(isinstance(loader, DataLoader) for loader in trainer.train_dataloader.values())


def test_list_of_train_loaders_every_epoch(tmp_path):
    module, trainer = _fit(tmp_path, [_dl(3), _dl(5)], max_epochs=2)
    epoch = [(0, [[0], [0]]), (1, [[1], [1]]), (2, [[2], [2]]), (3, [[0], [3]]), (4, [[1], [4]])]
    assert module.seen == epoch + epoch
    assert isinstance(trainer.train_dataloader, list) and len(trainer.train_dataloader) == 2


def test_limit_train_batches_applies_to_each_loader(tmp_path):
    module, trainer = _fit(tmp_path, [_dl(3), _dl(5)], limit_train_batches=2)
    assert module.seen == [(0, [[0], [0]]), (1, [[1], [1]])] and trainer.num_training_batches == 2
    # A fraction limits each loader ([2, 5]); the shorter one is not cut short at its limit (Lightning).
    module, trainer = _fit(tmp_path, [_dl(4), _dl(10)], limit_train_batches=0.5)
    assert trainer.num_training_batches == 5
    assert module.seen == [(0, [[0], [0]]), (1, [[1], [1]]), (2, [[2], [2]]), (3, [[3], [3]]), (4, [[0], [4]])]


@pytest.mark.parametrize(("mode", "expected"), [
    ("min_size", CYCLE[:3]),
    ("max_size", CYCLE[:3] + [(3, {"a": None, "b": [3]}), (4, {"a": None, "b": [4]})]),
    ("max_size_cycle", CYCLE),
])
def test_combined_loader_modes_in_fit(tmp_path, mode, expected):
    module, trainer = _fit(tmp_path, CombinedLoader({"a": _dl(3), "b": _dl(5)}, mode))
    assert module.seen == expected
    assert trainer.num_training_batches == len(expected)
    assert isinstance(trainer.train_dataloader, dict)


def test_sequential_mode_cannot_train(tmp_path):
    with pytest.raises(ValueError, match=r'mode="sequential".*max_size_cycle'):
        _fit(tmp_path, CombinedLoader({"a": _dl(3), "b": _dl(5)}, "sequential"))


def test_each_inner_loader_gets_its_own_epoch_and_batches_reach_the_hooks(tmp_path):
    class Hooked(Recorder):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            self.transferred = getattr(self, "transferred", []) + [(dataloader_idx, _plain(batch))]
            return batch

    class Seeded(torch.utils.data.RandomSampler):
        epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    shuffled = DataLoader(torch.arange(4).float(), sampler=Seeded(range(4)))
    module = Hooked()
    quiet_trainer(tmp_path, max_epochs=2, limit_train_batches=1).fit(module, {"a": shuffled, "b": _dl(2)})
    assert Seeded.epochs == [0, 1]
    assert [idx for idx, _ in module.transferred] == [0, 0]
    assert set(module.transferred[0][1]) == {"a", "b"}


def test_overfit_batches_turns_off_shuffling_in_each_loader(tmp_path):
    shuffled = DataLoader(torch.arange(8).float(), batch_size=2, shuffle=True)
    with pytest.warns(UserWarning, match="You requested to overfit but enabled train dataloader shuffling"):
        module, _ = _fit(tmp_path, {"a": shuffled, "b": _dl(4)}, overfit_batches=2, max_epochs=2)
    assert [batch["a"] for _, batch in module.seen] == [[0, 1], [2, 3], [0, 1], [2, 3]]


VAL_LIMITED = [(0, 0, [[0], [0]]), (0, 0, [[0], [0]]), (1, 0, [[1], [1]])]  # sanity batch, then two


@pytest.mark.parametrize("mode", ["max_size", "min_size", "max_size_cycle"])
def test_validation_with_a_non_sequential_combined_loader(tmp_path, mode):
    module, trainer = _fit(tmp_path, _dl(2), CombinedLoader([_dl(2), _dl(3)], mode), limit_val_batches=2,
                           num_sanity_val_steps=1)
    assert module.val_seen == VAL_LIMITED  # the step gets the combined batch and no dataloader_idx
    assert trainer.num_val_batches == [2, 2] and trainer.num_sanity_val_batches == [1, 1]
    assert isinstance(trainer.val_dataloaders, list)


def test_validation_with_a_sequential_combined_loader(tmp_path):
    module, trainer = _fit(tmp_path, _dl(2), CombinedLoader([_dl(2), _dl(3)], "sequential"), limit_val_batches=2,
                           num_sanity_val_steps=1)
    assert module.val_seen == [(0, 0, [0]), (0, 1, [0]), (0, 0, [0]), (1, 0, [1]), (0, 1, [0]), (1, 1, [1])]
    assert trainer.num_val_batches == [2, 2]


def test_validate_max_size_returns_one_result(tmp_path):
    module = ValRecorder()
    trainer = quiet_trainer(tmp_path)
    results = trainer.validate(module, CombinedLoader({"x": _dl(2), "y": _dl(3)}, "max_size"), verbose=False)
    assert module.val_seen == [(0, 0, {"x": [0], "y": [0]}), (1, 0, {"x": [1], "y": [1]}),
                               (2, 0, {"x": None, "y": [2]})]
    assert results == [{}] and trainer.num_val_batches == [2, 3]
    assert list(trainer.val_dataloaders) == ["x", "y"]


class Predictor(BoringModel):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return (batch_idx, dataloader_idx, _plain(batch))


def test_predict_with_combined_loaders(tmp_path):
    trainer = quiet_trainer(tmp_path)
    loaders = [_dl(2), _dl(3)]
    predictions = trainer.predict(Predictor(), CombinedLoader(loaders, "sequential"))
    assert predictions == [[(0, 0, [0]), (1, 0, [1])], [(0, 1, [0]), (1, 1, [1]), (2, 1, [2])]]
    assert isinstance(trainer.predict_dataloaders, list) and len(trainer.predict_dataloaders) == 2
    with pytest.raises(ValueError, match=r'only supports `CombinedLoader\(mode="sequential"\)`'):
        trainer.predict(Predictor(), CombinedLoader(loaders, "max_size"))


def test_iterable_boring_datamodule_fits(tmp_path):
    class Module(BoringModel):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.shapes, self.val_steps = [], []

        def training_step(self, batch, batch_idx):
            self.shapes.append([tuple(part.shape) for part in batch])
            return super().training_step(torch.cat(batch), batch_idx)

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.val_steps.append((batch_idx, dataloader_idx))

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            pass

        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return dataloader_idx

    module, datamodule = Module(), IterableBoringDataModule()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=datamodule)
    assert len(module.shapes) == 16 and module.shapes[0] == [(1, 4), (1, 4)]
    assert trainer.num_training_batches == float("inf") and trainer.num_val_batches == [32, float("inf")]
    assert len(module.val_steps) == 68 and module.val_steps[-1] == (31, 1)  # 2 + 2 sanity batches, then 32 + 32
    assert isinstance(trainer.train_dataloader, list) and len(trainer.train_dataloader) == 2
    trainer.test(module, datamodule=datamodule, verbose=False)
    assert trainer.num_test_batches == [64, float("inf")]
    predictions = trainer.predict(module, datamodule=datamodule)
    assert trainer.num_predict_batches == [128, float("inf")] and [len(p) for p in predictions] == [128, 128]


@pytest.mark.distributed
def test_each_train_loader_is_sharded_across_ranks(tmp_path, spawn_env):
    import json
    import multiprocessing

    from helpers.ddp_combined import CombinedProbe

    loaders = {"a": DataLoader(torch.arange(8), batch_size=2), "b": DataLoader(torch.arange(100, 104), batch_size=1)}
    trainer = quiet_trainer(tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1)
    try:
        trainer.fit(CombinedProbe(str(tmp_path)), loaders)
    finally:
        for child in multiprocessing.active_children():
            child.kill()
            child.join()
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    # Per rank: "a" has 4 samples (2 batches of 2), "b" 2 samples (2 batches of 1): max_size_cycle gives 2 batches.
    assert [report["num_training_batches"] for report in reports] == [2, 2]
    for key, everything in (("a", set(range(8))), ("b", set(range(100, 104)))):
        shards = [{v for batch in report["drawn"][key] for v in batch} for report in reports]
        assert not shards[0] & shards[1] and shards[0] | shards[1] == everything


def test_resuming_mid_epoch_continues_the_combined_batches_exactly(tmp_path):
    from fulmen.callbacks import ModelCheckpoint

    def loaders():
        return [_dl(3), _dl(5)]

    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    full, _ = _fit(tmp_path, loaders(), max_epochs=2, callbacks=[checkpoint], enable_checkpointing=True)
    resumed = Recorder()
    quiet_trainer(tmp_path, max_epochs=2).fit(resumed, loaders(), ckpt_path=str(tmp_path / "step=2.ckpt"))
    # Known difference: Lightning 2.6.6 restarts plain dataloaders from their first batch when resuming mid-epoch
    # ((0, 2) gets [[0], [0]]); fulmen continues exactly where the interrupted epoch was, as for a single loader.
    assert resumed.seen == full.seen[2:]


def test_a_dataset_inside_a_combined_loader_is_refused(tmp_path):
    from fulmen.demos.boring_classes import RandomDataset

    with pytest.raises(TypeError, match="RandomDataset, which is a Dataset, not a DataLoader"):
        _fit(tmp_path, CombinedLoader({"a": RandomDataset(32, 4), "b": _dl(2)}, "max_size"))
    with pytest.raises(TypeError, match="RandomDataset, which is a Dataset, not a DataLoader"):
        _fit(tmp_path, {"a": RandomDataset(32, 4), "b": _dl(2)})
