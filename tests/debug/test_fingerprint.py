"""Run fingerprints through the Trainer: `Trainer(fingerprint=...)` records every optimizer step, and
`python -m fulmen diff` names the step and component where nondeterminism was injected."""

import os
import random
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fulmen as L
from fulmen.__main__ import main as cli
from fulmen.debug import diff_runs, read_fingerprints
from fulmen.loggers import CSVLogger
from helpers.tiny import TinyModule, make_loader

STEPS_PER_EPOCH = 8  # make_loader(64): 8 batches of 8


class Perturbed(TinyModule):
    """TinyModule with dropout (so the torch RNG matters); at global step `at` it perturbs `what`: "loss" (adds a
    constant: same gradients), "rng" (one extra torch draw after the forward) or "python" (one `random.random()`)."""

    def __init__(self, at=None, what=None, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(0.3)
        self.at, self.what = at, what
        self.losses, self.norms = [], []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.layer(self.dropout(x)), y)
        if self.trainer.global_step == self.at:
            if self.what == "loss":
                loss = loss + 1e-3
            elif self.what == "rng":
                torch.rand(1)
            elif self.what == "python":
                random.random()
        self.losses.append(loss.detach().clone())
        return loss

    def on_before_optimizer_step(self, optimizer):
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        self.norms.append(torch.nn.utils.get_total_norm(grads).item())


def fit_run(directory, epochs=2, make=Perturbed, **flags):
    L.seed_everything(7, verbose=False)
    module = make()
    defaults = dict(max_epochs=epochs, fingerprint=directory, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=directory)
    trainer = L.Trainer(**{**defaults, **flags})
    trainer.fit(module, make_loader(64, shuffle=True))
    return trainer, module


def diff(capsys, a, b, *options):
    code = cli(["diff", str(a), str(b), *options])
    return code, capsys.readouterr()


def test_two_runs_of_one_seed_are_identical(tmp_path, capsys):
    fit_run(tmp_path / "a")
    fit_run(tmp_path / "b")
    code, out = diff(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 0, out
    assert "identical: 16 optimizer steps (0..15) on rank 0 agree in loss, grad_norm, rng_torch" in out.out


@pytest.mark.parametrize(("what", "components"), [("loss", ["loss"]), ("rng", ["rng_torch"])])
def test_nondeterminism_injected_at_a_step_is_named(tmp_path, capsys, what, components):
    fit_run(tmp_path / "a")
    fit_run(tmp_path / "b", make=lambda: Perturbed(at=5, what=what))
    code, out = diff(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1
    assert f"diverged at optimizer step 5 (epoch 0, batch_idx 5, optimizer 0) on rank 0: {components[0]}" in out.out
    assert "steps 0..4 are identical (5 rows)" in out.out
    [result] = diff_runs(str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.divergence.step == 5 and result.divergence.components == components
    if what == "loss":  # the value shown is the loss training_step returned
        row_a, row_b = result.divergence.row_a, result.divergence.row_b
        assert row_b["loss"] - row_a["loss"] == pytest.approx(1e-3, rel=1e-3)


def test_python_random_is_sampled_every_n_steps_and_named_with_its_interval(tmp_path, capsys, monkeypatch):
    from fulmen.debug import fingerprint

    monkeypatch.setattr(fingerprint, "SAMPLE_EVERY", 4)
    fit_run(tmp_path / "a")
    fit_run(tmp_path / "b", make=lambda: Perturbed(at=5, what="python"))
    code, out = diff(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1
    assert "diverged at optimizer step 8 (epoch 1, batch_idx 0, optimizer 0) on rank 0: rng_python" in out.out
    assert "(rng_python is sampled every 4 steps: it changed after step 4)" in out.out


def test_recorded_values_are_the_loss_and_the_gradient_norm_of_each_step(tmp_path):
    trainer, module = fit_run(tmp_path)
    rows = read_fingerprints(tmp_path / "fingerprints.bin").rows
    assert [row["step"] for row in rows] == list(range(16))
    assert [(row["epoch"], row["batch_idx"]) for row in rows] == [(e, b) for e in range(2) for b in range(8)]
    assert [row["loss"] for row in rows] == pytest.approx([loss.item() for loss in module.losses], rel=1e-6)
    assert [row["grad_norm"] for row in rows] == pytest.approx(module.norms, rel=1e-5)
    assert len({row["rng_torch"] for row in rows}) == 16  # dropout draws at every step
    assert all(row["rng_cuda"] == 0 for row in rows)


def test_clipping_by_norm_records_the_norm_before_clipping(tmp_path):
    _, module = fit_run(tmp_path, gradient_clip_val=0.05)
    rows = read_fingerprints(tmp_path / "fingerprints.bin").rows
    assert [row["grad_norm"] for row in rows] == pytest.approx(module.norms, rel=1e-5)
    assert min(module.norms) > 0.05  # every step was clipped, and the norm recorded is the one clipping measured


def test_accumulation_records_one_row_per_optimizer_step(tmp_path):
    _, module = fit_run(tmp_path, accumulate_grad_batches=4)
    rows = read_fingerprints(tmp_path / "fingerprints.bin").rows
    assert [(row["step"], row["batch_idx"]) for row in rows] == [(0, 3), (1, 7), (2, 3), (3, 7)]
    # The loss backpropagated last before each step (divided by the accumulation factor).
    assert [row["loss"] for row in rows] == pytest.approx([module.losses[i].item() / 4 for i in (3, 7, 11, 15)],
                                                          rel=1e-6)


class TwoOptimizers(Perturbed):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False
        self.other = nn.Linear(2, 2)

    def training_step(self, batch, batch_idx):
        first, second = self.optimizers()
        x, y = batch
        loss = F.cross_entropy(self.layer(self.dropout(x)), y)
        self.manual_backward(loss)
        first.step()
        first.zero_grad()
        other = self.other(self.layer(x).detach()).pow(2).mean()
        if self.trainer.global_step == self.at:
            other = other * 2
        self.manual_backward(other)
        second.step()
        second.zero_grad()

    def configure_optimizers(self):
        return torch.optim.SGD(self.layer.parameters(), lr=0.1), torch.optim.SGD(self.other.parameters(), lr=0.1)


def test_manual_optimization_records_every_optimizer_step(tmp_path, capsys):
    fit_run(tmp_path / "a", epochs=1, make=TwoOptimizers)
    rows = read_fingerprints(tmp_path / "a" / "fingerprints.bin").rows
    assert [(row["step"], row["batch_idx"], row["optimizer"]) for row in rows] == [
        (2 * b + o, b, o) for b in range(8) for o in range(2)]
    fit_run(tmp_path / "b", epochs=1, make=lambda: TwoOptimizers(at=7))
    code, out = diff(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1
    assert "diverged at optimizer step 7 (epoch 0, batch_idx 3, optimizer 1) on rank 0: loss, grad_norm" in out.out


class SaveAt(L.Callback):
    def __init__(self, step, path):
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def test_resume_appends_marks_the_resume_point_and_replaces_the_steps_trained_again(tmp_path, capsys):
    fit_run(tmp_path / "a")
    checkpoint = str(tmp_path / "step5.ckpt")
    fit_run(tmp_path / "b", epochs=1, callbacks=[SaveAt(5, checkpoint)])  # trains steps 0..7, saved after step 4
    L.seed_everything(123, verbose=False)  # the checkpoint must restore the RNG, not this seed
    trainer = L.Trainer(max_epochs=2, fingerprint=tmp_path / "b", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Perturbed(), make_loader(64, shuffle=True), ckpt_path=checkpoint)

    recorded = read_fingerprints(tmp_path / "b" / "fingerprints.bin")
    assert [(s["event"], s["step"], s["superseded"]) for s in recorded.sessions] == [("start", 0, 0),
                                                                                     ("resume", 5, 3)]
    assert recorded.sessions[1]["checkpoint"] == checkpoint
    assert [row["step"] for row in recorded.rows] == list(range(16))
    code, out = diff(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 0, out.out
    assert f"resumed at step 5 from {checkpoint}" in out.out
    assert "identical: 16 optimizer steps" in out.out


def test_default_directory_is_the_loggers_log_dir_else_default_root_dir(tmp_path):
    logger = CSVLogger(tmp_path / "logs")
    fit_run(tmp_path, epochs=1, fingerprint=True, logger=logger)
    assert os.path.isfile(os.path.join(logger.log_dir, "fingerprints.bin"))
    fit_run(tmp_path / "root", epochs=1, fingerprint=True)
    assert (tmp_path / "root" / "fingerprints.bin").is_file()


def test_a_failing_fit_keeps_the_steps_before_the_failure_and_restores_the_strategy(tmp_path):
    class Failing(Perturbed):
        def training_step(self, batch, batch_idx):
            if self.trainer.global_step == 3:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    with pytest.raises(RuntimeError, match="boom"):
        fit_run(tmp_path, make=Failing)
    assert [row["step"] for row in read_fingerprints(tmp_path / "fingerprints.bin").rows] == [0, 1, 2]
    trainer, _ = fit_run(tmp_path / "again")
    assert "backward" not in trainer.strategy.__dict__
    assert trainer.strategy._before_step.__name__ == "_before_step"


@pytest.mark.parametrize(("value", "error", "match"), [
    (3, TypeError, r"`Trainer\(fingerprint=3\)` is not valid: pass True"),
    ("", TypeError, "is not valid"),
    ("FILE", ValueError, "that path is a file. Pass the directory"),
])
def test_invalid_setting_is_refused_with_the_fix(tmp_path, value, error, match):
    if value == "FILE":
        value = tmp_path / "fingerprints.bin"
        value.write_bytes(b"")
    with pytest.raises(error, match=match):
        L.Trainer(fingerprint=value)


def test_off_by_default_and_not_imported():
    code = ("import sys, fulmen as L; t = L.Trainer(logger=False); "
            "assert t._fingerprints is None and 'fulmen.debug.fingerprint' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
