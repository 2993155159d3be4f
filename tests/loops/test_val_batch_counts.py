"""`trainer.num_sanity_val_batches` and `trainer.num_val_batches` as Lightning reports them.

Each row's expected values were recorded by running the same script with Lightning 2.6.6: `[sanity, val]` read
in `on_train_start`, `on_validation_start` of the sanity check (when one runs), `on_train_end`, after `fit`,
and after a following `validate` on 5 batches. Training has 4 batches; validation 3 (and 6 with two loaders).
"""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L


def _loader(n):
    return DataLoader(TensorDataset(torch.randn(n, 4)), batch_size=1)


class Counting(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.seen = {}

    def _record(self, where):
        trainer = self.trainer
        self.seen.setdefault(where, [list(trainer.num_sanity_val_batches), list(trainer.num_val_batches)])

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        pass

    def on_train_start(self):
        self._record("on_train_start")

    def on_validation_start(self):
        if self.trainer.sanity_checking:
            self._record("on_validation_start_sanity")

    def on_train_end(self):
        self._record("on_train_end")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


CASES = [
    ("default", {}, {"on_train_start": [[2], [3]], "on_validation_start_sanity": [[2], [3]], "on_train_end": [[2], [3]], "after_fit": [[2], [3]], "after_validate": [[2], [5]]}),
    ("sanity0", {"num_sanity_val_steps": 0}, {"on_train_start": [[0], [3]], "on_train_end": [[0], [3]], "after_fit": [[0], [3]], "after_validate": [[0], [5]]}),
    ("sanity5", {"num_sanity_val_steps": 5}, {"on_train_start": [[3], [3]], "on_validation_start_sanity": [[3], [3]], "on_train_end": [[3], [3]], "after_fit": [[3], [3]], "after_validate": [[3], [5]]}),
    ("sanity_all", {"num_sanity_val_steps": -1}, {"on_train_start": [[3], [3]], "on_validation_start_sanity": [[3], [3]], "on_train_end": [[3], [3]], "after_fit": [[3], [3]], "after_validate": [[3], [5]]}),
    ("every2_epochs1", {"check_val_every_n_epoch": 2}, {"on_train_start": [[2], [3]], "on_validation_start_sanity": [[2], [3]], "on_train_end": [[2], [3]], "after_fit": [[2], [3]], "after_validate": [[2], [5]]}),
    ("every2_epochs2", {"check_val_every_n_epoch": 2, "max_epochs": 2}, {"on_train_start": [[2], [3]], "on_validation_start_sanity": [[2], [3]], "on_train_end": [[2], [3]], "after_fit": [[2], [3]], "after_validate": [[2], [5]]}),
    ("maxsteps2", {"max_steps": 2, "max_epochs": 5}, {"on_train_start": [[2], [3]], "on_validation_start_sanity": [[2], [3]], "on_train_end": [[2], [3]], "after_fit": [[2], [3]], "after_validate": [[2], [5]]}),
    ("vci0.5", {"val_check_interval": 0.5}, {"on_train_start": [[2], [3]], "on_validation_start_sanity": [[2], [3]], "on_train_end": [[2], [3]], "after_fit": [[2], [3]], "after_validate": [[2], [5]]}),
    ("vci0.5_s0", {"val_check_interval": 0.5, "num_sanity_val_steps": 0}, {"on_train_start": [[0], [3]], "on_train_end": [[0], [3]], "after_fit": [[0], [3]], "after_validate": [[0], [5]]}),
    ("vci3_none", {"val_check_interval": 3, "check_val_every_n_epoch": None, "max_steps": 2}, {"on_train_start": [[2], [3]], "on_validation_start_sanity": [[2], [3]], "on_train_end": [[2], [3]], "after_fit": [[2], [3]], "after_validate": [[2], [5]]}),
    ("limitval0", {"limit_val_batches": 0}, {"on_train_start": [[], []], "on_train_end": [[], []], "after_fit": [[], []], "after_validate": [[], []]}),
    ("limitval2", {"limit_val_batches": 2}, {"on_train_start": [[2], [2]], "on_validation_start_sanity": [[2], [2]], "on_train_end": [[2], [2]], "after_fit": [[2], [2]], "after_validate": [[2], [2]]}),
    ("fastdev", {"fast_dev_run": 2}, {"on_train_start": [[0], [2]], "on_train_end": [[0], [2]], "after_fit": [[0], [2]], "after_validate": [[0], [2]]}),
    ("noloader", {}, {"on_train_start": [[], []], "on_train_end": [[], []], "after_fit": [[], []], "after_validate": [[], [5]]}),
    ("two", {}, {"on_train_start": [[2, 2], [3, 6]], "on_validation_start_sanity": [[2, 2], [3, 6]], "on_train_end": [[2, 2], [3, 6]], "after_fit": [[2, 2], [3, 6]], "after_validate": [[2, 2], [5, 1]]}),
    ("two_sanity0", {"num_sanity_val_steps": 0}, {"on_train_start": [[0, 0], [3, 6]], "on_train_end": [[0, 0], [3, 6]], "after_fit": [[0, 0], [3, 6]], "after_validate": [[0, 0], [5, 1]]}),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name, flags, expected", CASES, ids=[case[0] for case in CASES])
def test_val_batch_counts_match_lightning(tmp_path, name, flags, expected):
    flags = {"max_epochs": 1, "limit_train_batches": 4, **flags}
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, **flags)
    assert [trainer.num_sanity_val_batches, trainer.num_val_batches] == [[], []]
    module = Counting()
    two = name.startswith("two")
    val = [_loader(3), _loader(6)] if two else (None if name == "noloader" else _loader(3))
    trainer.fit(module, _loader(4), val)
    seen = dict(module.seen)
    seen["after_fit"] = [trainer.num_sanity_val_batches, trainer.num_val_batches]
    trainer.validate(module, [_loader(5), _loader(1)] if two else _loader(5), verbose=False)
    seen["after_validate"] = [trainer.num_sanity_val_batches, trainer.num_val_batches]
    assert seen == expected
