"""A standalone training run for the exact-resume and graceful-stop tests; each call is a fresh process.

Trains a small regression net with dropout on shuffled data (SGD with momentum, a per-step StepLR,
validation every epoch) up to `--max-steps`, optionally checkpointing or resuming, and writes the final
`state_dict` to `--out` plus a JSON summary next to it (`<out>.json`).

    python resume_script.py --out final.pt --max-steps 20 [--resume CKPT] [--every-steps 5 ...]
        [--epoch-checkpoints] [--val-checkpoints] [--generator] [--accumulate 2]
        [--default-checkpointing] [--last-in DIR]
        [--started FILE [--wait-for-signal]] [--teardown FILE]

With `--started FILE --wait-for-signal`, the run writes FILE after its third batch and then waits until
the Trainer's handler has received SIGTERM or SIGINT from the test, so the signal always lands mid-run
(no sleeps, no dependence on how fast the machine is).
"""

import argparse
import json
import os
import signal
import threading

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import ModelCheckpoint

NUM_SAMPLES = 40
BATCH_SIZE = 6  # 7 batches per epoch, the last one holding 4 samples


class DropoutRegressor(L.LightningModule):
    def __init__(self, wait_for_signal=False, started=None, teardown_marker=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 1))
        self.wait_for_signal = wait_for_signal
        self.started = started
        self.teardown_marker = teardown_marker
        self.train_batches = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_batches += 1
        return (self.net(x) - y).pow(2).mean()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.started and self.train_batches == 3:
            handled = self._watch_signal_handlers() if self.wait_for_signal else None
            with open(self.started, "w") as file:
                file.write(str(self.trainer.global_step))
            print(f"started at global_step {self.trainer.global_step}", flush=True)
            if handled is not None:
                # A generous bound only so a broken run fails instead of hanging; the test's own timeout is shorter.
                if not handled.wait(timeout=600):
                    raise RuntimeError("no SIGTERM/SIGINT arrived")

    @staticmethod
    def _watch_signal_handlers():
        """Wrap the Trainer's SIGTERM/SIGINT handlers so we learn when one has run (it still does all the work)."""
        handled = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            trainer_handler = signal.getsignal(signum)

            def handler(received, frame, trainer_handler=trainer_handler):
                signal.signal(received, trainer_handler)
                trainer_handler(received, frame)
                handled.set()

            signal.signal(signum, handler)
        return handled

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", (self.net(x) - y).pow(2).mean())

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.9)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def teardown(self, stage):
        if self.teardown_marker:
            with open(self.teardown_marker, "w") as file:
                file.write(str(getattr(stage, "value", stage)))


class StartRecorder(L.Callback):
    """Remembers where the (possibly resumed) run started."""

    def on_train_start(self, trainer, pl_module):
        self.start = {"global_step": trainer.global_step, "epoch": trainer.current_epoch}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--every-steps", type=int, action="append", default=[])
    parser.add_argument("--epoch-checkpoints", action="store_true")
    parser.add_argument("--val-checkpoints", action="store_true")
    parser.add_argument("--generator", action="store_true")
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--wait-for-signal", action="store_true")
    parser.add_argument("--started", default=None)
    parser.add_argument("--teardown", default=None)
    parser.add_argument("--default-checkpointing", action="store_true")  # the Trainer's own ModelCheckpoint
    parser.add_argument("--last-in", default=None)  # a ModelCheckpoint(save_last=True) writing to this directory
    args = parser.parse_args()

    # Checkpoints and the default root directory go next to the output file.
    root = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(root, exist_ok=True)
    L.seed_everything(1, verbose=False)
    data = torch.Generator().manual_seed(0)
    dataset = TensorDataset(torch.randn(NUM_SAMPLES, 4, generator=data), torch.randn(NUM_SAMPLES, 1, generator=data))
    # Without an explicit generator the shuffle order comes from the global torch RNG.
    generator = torch.Generator().manual_seed(7) if args.generator else None
    train = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, generator=generator)
    val = DataLoader(dataset, batch_size=10)

    callbacks = [StartRecorder()]
    for every in args.every_steps:
        callbacks.append(ModelCheckpoint(dirpath=os.path.join(root, f"every{every}"), every_n_train_steps=every,
                                         save_top_k=-1))
    if args.epoch_checkpoints:
        # Saved when the training epoch ends (after that epoch's validation).
        callbacks.append(ModelCheckpoint(dirpath=os.path.join(root, "epochs"), save_top_k=-1))
    if args.val_checkpoints:
        # Saved when validation ends, while the epoch is still running.
        callbacks.append(ModelCheckpoint(dirpath=os.path.join(root, "val"), monitor="val_loss", save_top_k=-1,
                                         save_on_train_epoch_end=False))
    if args.last_in:
        callbacks.append(ModelCheckpoint(dirpath=args.last_in, save_last=True))
    trainer = L.Trainer(default_root_dir=root, max_steps=args.max_steps, max_epochs=-1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2,
                        accumulate_grad_batches=args.accumulate, callbacks=callbacks,
                        enable_checkpointing=len(callbacks) > 1 or args.default_checkpointing)
    model = DropoutRegressor(wait_for_signal=args.wait_for_signal, started=args.started, teardown_marker=args.teardown)
    trainer.fit(model, train, val, ckpt_path=args.resume)

    torch.save(model.state_dict(), args.out)
    summary = {"start": callbacks[0].start, "global_step": trainer.global_step, "epoch": trainer.current_epoch,
               "train_batches": model.train_batches}
    with open(args.out + ".json", "w") as file:
        json.dump(summary, file)
    print("finished", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
