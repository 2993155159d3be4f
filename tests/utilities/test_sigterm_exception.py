"""`SIGTERMException`: what `trainer.fit` raises after a SIGTERM, once the resumable checkpoint is saved."""

import os
import signal
import sys

import pytest
import torch

import fulmen as L
from fulmen.demos import BoringModel
from fulmen.utilities.exceptions import SIGTERMException

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class SendSignal(L.Callback):
    def __init__(self, signum):
        self.signum = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 1:
            os.kill(os.getpid(), self.signum)


def fit_until(tmp_path, signum):
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=10, limit_val_batches=0,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, callbacks=[SendSignal(signum)])
    trainer.fit(BoringModel())


def test_sigterm_during_fit_raises_sigterm_exception_after_saving(tmp_path):
    with pytest.raises(SIGTERMException) as info:
        fit_until(tmp_path, signal.SIGTERM)
    assert isinstance(info.value, SystemExit) and info.value.code == 143  # the process exit code, as before
    checkpoint = torch.load(tmp_path / "checkpoints" / "signal-interrupted.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2


def test_sigint_still_ends_with_a_plain_system_exit(tmp_path):
    with pytest.raises(SystemExit) as info:
        fit_until(tmp_path, signal.SIGINT)
    assert type(info.value) is SystemExit and info.value.code == 130
