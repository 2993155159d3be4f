"""`trainer.init_module()`: building the model on the strategy's device in the precision's dtype."""

import pytest
import torch

import fulmen as L


@pytest.mark.parametrize(("precision", "dtype"), [("32-true", torch.float32), ("64-true", torch.float64),
                                                  ("bf16-true", torch.bfloat16), ("16-true", torch.float16)])
def test_tensors_made_inside_take_the_precision_dtype(precision, dtype):
    trainer = L.Trainer(precision=precision, logger=False, accelerator="cpu")
    with trainer.init_module():
        layer = torch.nn.Linear(3, 2)
    assert layer.weight.dtype == dtype and layer.weight.device.type == "cpu"
    assert torch.get_default_dtype() == torch.float32  # restored on exit
    assert torch.nn.Linear(3, 2).weight.dtype == torch.float32


def test_empty_init_skips_the_random_initialisation():
    trainer = L.Trainer(logger=False, accelerator="cpu")
    torch.manual_seed(0)
    with trainer.init_module(empty_init=True):
        torch.nn.Linear(64, 64)
    skipped = torch.rand(1)
    torch.manual_seed(0)
    with trainer.init_module(empty_init=False):
        torch.nn.Linear(64, 64)
    initialised = torch.rand(1)
    torch.manual_seed(0)
    untouched = torch.rand(1)
    assert torch.equal(skipped, untouched)  # the initialisers never drew from the generator
    assert not torch.equal(initialised, untouched)


def test_a_module_built_inside_trains(tmp_path):
    from fulmen.demos.boring_classes import BoringModel

    trainer = L.Trainer(default_root_dir=tmp_path, precision="64-true", max_epochs=1, limit_train_batches=2,
                        limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    with trainer.init_module():
        model = BoringModel()
    assert model.layer.weight.dtype == torch.float64
    trainer.fit(model)
    assert trainer.global_step == 2


def test_layers_made_in_configure_model_take_the_precision_dtype(tmp_path):
    from fulmen.demos.boring_classes import BoringModel

    class Late(BoringModel):
        def configure_model(self):
            self.seen_default_dtype = torch.get_default_dtype()
            self.extra = torch.nn.Linear(2, 2)

    model = Late()
    trainer = L.Trainer(default_root_dir=tmp_path, precision="64-true", max_epochs=1, limit_train_batches=1,
                        limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.fit(model)
    assert model.seen_default_dtype == torch.float64 and model.extra.weight.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32
