"""`find_shared_parameters` / `set_shared_parameters` and `disable_possible_user_warnings` (from `fulmen.utilities`).

The shared-parameter groups were compared with Lightning 2.6.6 on the same module.
"""

import warnings

import torch
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.demos.boring_classes import DemoModel, RandomDataset
from fulmen.utilities import disable_possible_user_warnings, find_shared_parameters, set_shared_parameters
from fulmen.utilities.warnings import PossibleUserWarning


class Tied(torch.nn.Module):
    def __init__(self, tie=True):
        super().__init__()
        self.emb = torch.nn.Embedding(5, 3)
        self.inner = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 5, bias=False))
        self.head = torch.nn.Linear(3, 3)
        if tie:
            self.inner[1].weight = self.emb.weight
            self.head.bias = self.inner[0].bias


def test_find_shared_parameters_lists_each_group_of_names():
    assert find_shared_parameters(Tied()) == [["emb.weight", "inner.1.weight"], ["inner.0.bias", "head.bias"]]
    assert find_shared_parameters(Tied(tie=False)) == []
    assert find_shared_parameters(torch.nn.Linear(2, 2)) == []


def test_set_shared_parameters_ties_the_groups_again():
    shared = find_shared_parameters(Tied())
    untied = Tied(tie=False)
    assert set_shared_parameters(untied, shared) is untied
    assert untied.inner[1].weight is untied.emb.weight and untied.head.bias is untied.inner[0].bias
    assert find_shared_parameters(untied) == shared
    # Tied parameters count once for an optimizer, as with the original module.
    assert len(list(untied.parameters())) == len(list(Tied().parameters()))


class DemoWithValidationStep(DemoModel):
    def validation_step(self, batch, batch_idx):
        pass


def fit_without_validation_data():
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(DemoWithValidationStep(), train_dataloaders=DataLoader(RandomDataset(32, 4), batch_size=2))


def test_disable_possible_user_warnings_silences_only_that_category():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_without_validation_data()
        assert any(w.category is PossibleUserWarning for w in caught)
        caught.clear()
        disable_possible_user_warnings()
        fit_without_validation_data()
        warnings.warn("still shown", UserWarning)
        assert [w.category for w in caught] == [UserWarning]


def test_disable_possible_user_warnings_for_one_module():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        disable_possible_user_warnings(module="some_other_module")
        warnings.warn("shown", PossibleUserWarning)
        disable_possible_user_warnings(module=__name__)
        warnings.warn("hidden", PossibleUserWarning)
    assert [str(w.message) for w in caught] == ["shown"]
