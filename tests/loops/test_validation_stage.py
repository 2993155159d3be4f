"""Inside fit, the trainer is in the validating stage while it asks for validation data and zeroes gradients
before a validation (Lightning 2.6: `trainer.validating` is True in `val_dataloader` and
`on_validation_model_zero_grad`; checked against its recorded hook stages in tests/debug/golden_lightning_hooks.json)."""

import fulmen as L
from helpers.tiny import TinyModule, make_loader


class StageSpy(TinyModule):
    def __init__(self):
        super().__init__()
        self.seen = {}

    def _note(self, hook):
        self.seen.setdefault(hook, (self.trainer.validating, self.trainer.training))

    def val_dataloader(self):
        self._note("val_dataloader")
        return make_loader(16)

    def on_validation_model_zero_grad(self):
        self._note("on_validation_model_zero_grad")
        super().on_validation_model_zero_grad()

    def on_validation_start(self):
        self._note("on_validation_start")

    def on_train_epoch_end(self):
        self._note("on_train_epoch_end")


def test_validation_data_and_zero_grad_hooks_run_in_the_validating_stage(tmp_path):
    module = StageSpy()
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, make_loader(16))
    assert module.seen == {"val_dataloader": (True, False), "on_validation_model_zero_grad": (True, False),
                           "on_validation_start": (True, False), "on_train_epoch_end": (False, True)}
