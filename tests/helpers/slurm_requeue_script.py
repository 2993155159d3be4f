"""Run by tests/strategies/test_slurm_requeue.py under fake SLURM variables (one task):

    python slurm_requeue_script.py ROOT first    # sends itself SIGUSR1 at global step 1, trains to step 3
    python slurm_requeue_script.py ROOT resume   # a plain fit(): resumes from the newest hpc checkpoint

Writes ROOT/<phase>.json with the final global step and the checkpoint the fit started from.
"""

import json
import os
import signal
import sys
import threading

import fulmen as L
from fulmen.plugins.environments import SLURMEnvironment
from tiny import TinyModule, make_loader

root, phase = sys.argv[1], sys.argv[2]
saved = threading.Event()


class SaveMarker(L.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        saved.set()


class Module(TinyModule):
    def training_step(self, batch, batch_idx):
        if phase == "first" and self.global_step == 1 and not saved.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)
            # The handler runs on this (main) thread; the wait returns once it has saved the checkpoint.
            if not saved.wait(timeout=120):
                raise RuntimeError("the requeue handler did not save a checkpoint")
        return super().training_step(batch, batch_idx)


trainer = L.Trainer(default_root_dir=root, accelerator="cpu", devices=1, max_steps=3, plugins=[SLURMEnvironment()],
                    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[SaveMarker()])
trainer.fit(Module(), make_loader(64))
with open(os.path.join(root, f"{phase}.json"), "w") as file:
    json.dump({"global_step": trainer.global_step, "ckpt_path": trainer.ckpt_path}, file)
