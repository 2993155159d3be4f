"""`torch.compile`: a compiled LightningModule, or a submodule compiled in `configure_model`, trains, validates,
tests, predicts, checkpoints without `_orig_mod.` in its keys and resumes.

Most tests compile with a counting backend that runs the traced graph as is (the numbers are eager's, so runs
compare exactly and nothing is built with a C++ compiler); one test compiles with inductor on the CPU.
"""

import shutil
from copy import deepcopy

import pytest
import torch
from torch import nn

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from helpers.tiny import TinyModule, WithDataHooks, make_loader, quiet_trainer


class CountingBackend:
    """A `torch.compile` backend that records each graph it is given and runs it unchanged."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


class CompilesInConfigureModel(TinyModule):
    def __init__(self, backend=None):
        super().__init__()
        self.backend = backend
        self.net = nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
        del self.layer

    def configure_model(self):
        if self.backend is not None and not isinstance(self.net, torch._dynamo.OptimizedModule):
            self.net = torch.compile(self.net, backend=self.backend)

    def forward(self, x):
        return self.net(x)


def _weights(module):
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def test_a_compiled_module_runs_every_stage_through_its_compiled_forward(tmp_path):
    torch.manual_seed(0)
    eager = WithDataHooks()
    torch.manual_seed(0)
    module = WithDataHooks()
    backend = CountingBackend()
    compiled = torch.compile(module, backend=backend)
    quiet_trainer(tmp_path, max_steps=4, num_sanity_val_steps=0).fit(eager)
    trainer = quiet_trainer(tmp_path, max_steps=4, num_sanity_val_steps=0)
    trainer.fit(compiled)
    assert trainer.lightning_module is module  # hooks, `self.log` and checkpoints see the LightningModule
    assert backend.graphs >= 1 and module.calls["training_step"] == 4
    for key, value in _weights(eager).items():
        torch.testing.assert_close(module.state_dict()[key], value)
    validated = module.calls["validation_step"]
    assert len(trainer.validate(compiled, verbose=False)) == 1
    assert len(trainer.test(compiled, verbose=False)) == 1
    predictions = trainer.predict(compiled)
    assert len(predictions) == 2 and predictions[0].shape == (8, 2)
    assert module.calls["validation_step"] == validated + 2 and module.calls["test_step"] == 2
    # The same compiled wrapper again: its compiled forward is reused, not compiled once more on top.
    graphs = backend.graphs
    trainer.predict(compiled)
    assert backend.graphs == graphs
    # A deep copy (as weight-averaging callbacks make) runs its own weights through the compiled forward.
    copy = deepcopy(module)
    with torch.no_grad():
        copy.layer.weight.zero_()
        copy.layer.bias.fill_(1.0)
    assert torch.equal(copy(torch.ones(3, 32)), torch.ones(3, 2))


def test_a_compiled_module_checkpoints_plain_keys_and_loads_uncompiled(tmp_path):
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(torch.compile(module, backend=CountingBackend()), make_loader(16))
    path = tmp_path / "whole.ckpt"
    trainer.save_checkpoint(path)
    assert sorted(torch.load(path, weights_only=True)["state_dict"]) == ["layer.bias", "layer.weight"]
    loaded = TinyModule.load_from_checkpoint(path)
    torch.testing.assert_close(loaded.layer.weight, module.layer.weight.detach(), rtol=0, atol=0)


def test_a_compiled_plain_nn_module_is_refused():
    with pytest.raises(ValueError, match=r"compile`d Linear, not a compiled `fulmen.LightningModule`"):
        L.Trainer(logger=False).fit(torch.compile(nn.Linear(2, 2), backend="eager"), make_loader(16))


def test_compiled_in_configure_model_checkpoints_without_orig_mod_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    straight = CompilesInConfigureModel(CountingBackend())
    quiet_trainer(tmp_path / "straight", max_steps=8).fit(straight, make_loader(64))
    assert isinstance(straight.net, torch._dynamo.OptimizedModule)
    assert straight.backend.graphs >= 1

    torch.manual_seed(0)
    first = CompilesInConfigureModel(CountingBackend())
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=4, save_top_k=-1)
    quiet_trainer(tmp_path / "first", max_steps=4, callbacks=[callback]).fit(first, make_loader(64))
    path = tmp_path / "ckpts" / "epoch=0-step=4.ckpt"
    keys = list(torch.load(path, weights_only=True)["state_dict"])
    assert keys and not any("_orig_mod" in key for key in keys)
    assert "net.1.num_batches_tracked" in keys

    # Into the module without compiling (load_from_checkpoint builds it; configure_model never runs there).
    plain = CompilesInConfigureModel.load_from_checkpoint(path)
    assert isinstance(plain.net, nn.Sequential)
    for key, value in _weights(first).items():
        torch.testing.assert_close(plain.state_dict()[key.replace("_orig_mod.", "")], value, rtol=0, atol=0)

    # Resumed into a compiled module: the same weights as the run that never stopped (eager math, so exact).
    resumed = CompilesInConfigureModel(CountingBackend())
    trainer = quiet_trainer(tmp_path / "resumed", max_steps=8)
    trainer.fit(resumed, make_loader(64), ckpt_path=path)
    assert trainer.global_step == 8
    for key, value in _weights(straight).items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_a_checkpoint_with_orig_mod_keys_loads_into_the_uncompiled_module(tmp_path):
    # Lightning writes `net._orig_mod.*` keys for a submodule compiled in `configure_model`.
    source = CompilesInConfigureModel()
    checkpoint = {"state_dict": {key.replace("net.", "net._orig_mod."): value
                                 for key, value in source.state_dict().items()},
                  "hyper_parameters": {}}
    torch.save(checkpoint, tmp_path / "lightning.ckpt")
    loaded = CompilesInConfigureModel.load_from_checkpoint(tmp_path / "lightning.ckpt")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="inductor builds its CPU kernels with a C++ compiler")
def test_a_module_compiled_with_inductor_trains_and_matches_eager(tmp_path):
    torch.manual_seed(0)
    eager = TinyModule()
    torch.manual_seed(0)
    module = TinyModule()
    quiet_trainer(tmp_path, max_steps=3).fit(eager, make_loader(32))
    trainer = quiet_trainer(tmp_path, max_steps=3)
    trainer.fit(torch.compile(module), make_loader(32))  # inductor: C++ kernels built on this machine
    assert trainer.global_step == 3
    for key, value in _weights(eager).items():
        torch.testing.assert_close(module.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_a_compiled_module_cannot_go_to_spawned_processes_and_says_what_to_do_instead(tmp_path):
    trainer = quiet_trainer(tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=1)
    with pytest.raises(TypeError, match=r"compile`d TinyModule cannot be pickled .*Use `strategy=\"ddp\"`"):
        trainer.fit(torch.compile(TinyModule(), backend="eager"), make_loader(16))


@pytest.mark.distributed
def test_ddp_spawn_hands_back_the_weights_of_a_layer_compiled_in_configure_model(tmp_path, spawn_env):
    from helpers.compiled_modules import CompilesLayer

    module = CompilesLayer()
    before = module.layer.weight.detach().clone()
    trainer = quiet_trainer(tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=2)
    trainer.fit(module, make_loader(32))
    assert isinstance(module.layer, nn.Linear)  # compiled only in the ranks
    assert not torch.equal(module.layer.weight, before)
