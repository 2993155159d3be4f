"""Nested batches: `apply_to_collection` / `move_data_to_device` keep every container type and non-tensor
leaf, a fit hands `training_step` the collated structure, and the three batch-transfer hooks run in order
with the dataloader index (a datamodule's override winning over the module's)."""

import dataclasses
from collections import OrderedDict, defaultdict, namedtuple

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.utilities import apply_to_collection, move_data_to_device
from helpers.module_fixtures import LinearModule, VectorDataset, quiet_trainer, vector_loader

Pair = namedtuple("Pair", ["features", "label"])


@dataclasses.dataclass
class Sample:
    features: torch.Tensor
    name: str
    count: int = 3


def _nested_batch():
    return {
        "pair": Pair(torch.ones(2, 3), "cat"),
        "items": [torch.zeros(2), ("text", 7, torch.arange(2))],
        "sample": Sample(torch.full((2,), 2.0), "s"),
        "meta": OrderedDict(id=5, scale=torch.tensor(0.5)),
    }


def test_apply_to_collection_keeps_every_container_and_leaf():
    out = apply_to_collection(_nested_batch(), torch.Tensor, lambda t: t + 1)
    assert isinstance(out, dict) and list(out) == ["pair", "items", "sample", "meta"]
    assert type(out["pair"]) is Pair and out["pair"].label == "cat"
    torch.testing.assert_close(out["pair"].features, torch.full((2, 3), 2.0))
    assert isinstance(out["items"], list) and isinstance(out["items"][1], tuple)
    assert out["items"][1][:2] == ("text", 7)
    assert torch.equal(out["items"][1][2], torch.tensor([1, 2]))
    assert type(out["sample"]) is Sample and out["sample"].name == "s" and out["sample"].count == 3
    torch.testing.assert_close(out["sample"].features, torch.full((2,), 3.0))
    assert type(out["meta"]) is OrderedDict and out["meta"]["id"] == 5
    torch.testing.assert_close(out["meta"]["scale"], torch.tensor(1.5))


def test_apply_to_collection_does_not_modify_the_input():
    batch = _nested_batch()
    apply_to_collection(batch, torch.Tensor, lambda t: t + 10)
    assert torch.equal(batch["pair"].features, torch.ones(2, 3))
    assert torch.equal(batch["sample"].features, torch.full((2,), 2.0))


def test_apply_to_collection_returns_a_new_dataclass():
    sample = Sample(torch.ones(2), "n")
    out = apply_to_collection(sample, torch.Tensor, lambda t: t * 2)
    assert out is not sample
    assert torch.equal(sample.features, torch.ones(2))
    assert torch.equal(out.features, torch.full((2,), 2.0))


def test_apply_to_collection_passes_extra_arguments():
    assert apply_to_collection([torch.ones(1), 2.0], torch.Tensor, lambda t, k: t * k, 3)[0].item() == 3.0
    assert apply_to_collection([torch.ones(1), 2.0], torch.Tensor, lambda t, k: t * k, k=5)[0].item() == 5.0


def test_apply_to_collection_tuple_of_dtypes_and_container_dtype():
    assert apply_to_collection([torch.ones(1), 2, "x"], (torch.Tensor, int), lambda v: v * 10)[1:] == [20, "x"]
    assert apply_to_collection({"k": (1, 2)}, tuple, lambda t: "tuple!") == {"k": "tuple!"}


def test_apply_to_collection_keeps_defaultdict_and_none():
    data = defaultdict(list, a=torch.ones(1))
    out = apply_to_collection(data, torch.Tensor, lambda t: t + 1)
    assert isinstance(out, defaultdict) and out.default_factory is list
    assert apply_to_collection({"a": None, "b": 1}, torch.Tensor, lambda t: t) == {"a": None, "b": 1}


def test_apply_to_collection_keeps_init_false_dataclass_fields():
    @dataclasses.dataclass
    class WithDerived:
        features: torch.Tensor
        seen: int = dataclasses.field(init=False, default=0)

    sample = WithDerived(torch.ones(1))
    sample.seen = 9
    out = apply_to_collection(sample, torch.Tensor, lambda t: t + 1)
    assert out.seen == 9
    assert torch.equal(out.features, torch.tensor([2.0]))


def test_move_data_to_device_keeps_structure_and_non_tensor_leaves():
    moved = move_data_to_device(_nested_batch(), torch.device("cpu"))
    assert moved["pair"].label == "cat" and type(moved["pair"]) is Pair
    assert moved["items"][1][:2] == ("text", 7)
    assert type(moved["sample"]) is Sample and moved["sample"].name == "s"
    assert moved["meta"]["id"] == 5
    assert move_data_to_device("string", "cpu") == "string"
    assert move_data_to_device(3, "cpu") == 3


def test_move_data_to_device_calls_to_on_custom_objects():
    class Transferable:
        def __init__(self):
            self.moved_to = None

        def to(self, device, **kwargs):
            self.moved_to = str(device)
            return self

    item = Transferable()
    out = move_data_to_device([item], "cpu")
    assert out[0] is item and item.moved_to == "cpu"


def test_move_data_to_device_keeps_object_whose_to_returns_none():
    class InPlace:
        def to(self, device):
            self.device = device

    item = InPlace()
    assert move_data_to_device([item], "cpu")[0] is item


def test_move_data_to_device_uses_a_dataclass_own_to():
    @dataclasses.dataclass
    class Custom:
        x: torch.Tensor

        def to(self, device):
            return "custom-to"

    assert move_data_to_device({"d": Custom(torch.ones(1))}, "cpu") == {"d": "custom-to"}


# -- through a fit -----------------------------------------------------------------------------------


def _nested_collate(items):
    features = torch.stack(items)
    return {
        "pair": Pair(features, "cat"),
        "list": [features[:, :2], ("text", len(items))],
        "sample": Sample(features[:, 0], "s", count=len(items)),
    }


class _StructureRecorder(LinearModule):
    def __init__(self):
        super().__init__()
        self.batches = []

    def training_step(self, batch, batch_idx):
        self.batches.append(batch)
        return self(batch["pair"].features).sum()


def test_nested_batch_reaches_training_step_unchanged(tmp_path):
    model = _StructureRecorder()
    loader = DataLoader(VectorDataset(8), batch_size=4, collate_fn=_nested_collate)
    quiet_trainer(tmp_path).fit(model, loader)
    assert len(model.batches) == 2
    expected = _nested_collate([VectorDataset(8)[i] for i in range(4)])
    batch = model.batches[0]
    assert type(batch["pair"]) is Pair and batch["pair"].label == "cat"
    torch.testing.assert_close(batch["pair"].features, expected["pair"].features)
    assert isinstance(batch["list"], list) and batch["list"][1] == ("text", 4)
    assert type(batch["sample"]) is Sample and (batch["sample"].name, batch["sample"].count) == ("s", 4)
    torch.testing.assert_close(batch["sample"].features, expected["sample"].features)


def test_double_precision_casts_float_leaves_of_a_nested_batch(tmp_path):
    model = _StructureRecorder()

    def collate(items):
        batch = _nested_collate(items)
        batch["ids"] = torch.arange(len(items))
        return batch

    loader = DataLoader(VectorDataset(8), batch_size=4, collate_fn=collate)
    quiet_trainer(tmp_path, precision="64-true").fit(model, loader)
    batch = model.batches[0]
    assert batch["pair"].features.dtype == torch.float64
    assert batch["list"][0].dtype == torch.float64
    assert batch["sample"].features.dtype == torch.float64
    assert batch["ids"].dtype == torch.int64
    assert batch["pair"].label == "cat" and batch["list"][1] == ("text", 4)


# -- the three transfer hooks ------------------------------------------------------------------------


class _TransferHooks(LinearModule):
    def __init__(self):
        super().__init__()
        self.calls = []
        self.seen = []

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.calls.append(("before", dataloader_idx))
        return {"x": batch, "stage": ["before"]}

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        self.calls.append(("transfer", str(device), dataloader_idx))
        return {"x": batch["x"].to(device), "stage": batch["stage"] + ["transfer"]}

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.calls.append(("after", dataloader_idx))
        batch["stage"] = batch["stage"] + ["after"]
        batch["x"] = batch["x"] * 0
        return batch

    def training_step(self, batch, batch_idx):
        self.seen.append(("train", batch["stage"], batch["x"].abs().sum().item()))
        return self(batch["x"]).sum()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen.append(("val", dataloader_idx, batch["stage"]))


def test_transfer_hooks_run_in_order_and_their_results_reach_training_step(tmp_path):
    model = _TransferHooks()
    quiet_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, vector_loader())
    assert model.calls == [("before", 0), ("transfer", "cpu", 0), ("after", 0)]
    assert model.seen == [("train", ["before", "transfer", "after"], 0.0)]


def test_transfer_hooks_receive_the_validation_dataloader_index(tmp_path):
    model = _TransferHooks()
    trainer = quiet_trainer(tmp_path, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, vector_loader(), [vector_loader(), vector_loader()])
    assert model.calls[3:] == [("before", 0), ("transfer", "cpu", 0), ("after", 0),
                               ("before", 1), ("transfer", "cpu", 1), ("after", 1)]
    stages = ["before", "transfer", "after"]
    assert model.seen[1:] == [("val", 0, stages), ("val", 1, stages)]


def test_datamodule_transfer_hook_wins_over_the_module(tmp_path):
    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return vector_loader()

        def on_after_batch_transfer(self, batch, dataloader_idx):
            batch["stage"] = batch["stage"] + ["datamodule-after"]
            return batch

    model = _TransferHooks()
    quiet_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=Data())
    assert model.calls == [("before", 0), ("transfer", "cpu", 0)]
    assert model.seen[0][1] == ["before", "transfer", "datamodule-after"]


def test_transfer_hook_overridden_in_both_warns(tmp_path):
    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return vector_loader()

        def on_after_batch_transfer(self, batch, dataloader_idx):
            return batch

    with pytest.warns(UserWarning, match="overridden `on_after_batch_transfer` in both"):
        quiet_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(_TransferHooks(), datamodule=Data())


def test_predict_also_runs_the_transfer_hooks(tmp_path):
    class Predicting(_TransferHooks):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return batch["stage"]

    model = Predicting()
    predictions = quiet_trainer(tmp_path).predict(model, vector_loader(length=8, batch_size=4))
    assert predictions == [["before", "transfer", "after"]] * 2
