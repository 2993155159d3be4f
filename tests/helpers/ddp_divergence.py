"""A script whose ranks go astray on purpose, for the DDP divergence detector tests.

    python ddp_divergence.py CASE STRATEGY DEVICES [TIMEOUT]

CASE: "skip_log" (the last rank skips one `self.log(..., sync_dist=True)` at step 2), "fewer_batch" (the last rank
has one training batch fewer), "raise" (the last rank raises in `training_step` at step 2), "slow" (the last rank
works three timeouts longer at step 2) or "none" (all agree).
STRATEGY: "ddp" (this script re-launched per rank, or started by torchrun) or "ddp_spawn". TIMEOUT goes to
`DDPStrategy(divergence_timeout=...)` when given. The module lives at module level so "ddp_spawn" can pickle it.
"""

import sys
import time

import torch
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.strategies import DDPStrategy

SKIP_STEP = 2


class Astray(L.LightningModule):
    def __init__(self, case):
        super().__init__()
        self.case = case
        self.layer = torch.nn.Linear(4, 1)

    def _last_rank(self):
        return self.global_rank == self.trainer.world_size - 1

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch).pow(2).mean()
        if self.case == "raise" and self._last_rank() and batch_idx == SKIP_STEP:
            raise RuntimeError("boom: a bug on one rank")
        if self.case == "slow" and self._last_rank() and batch_idx == SKIP_STEP:
            time.sleep(3 * self.trainer.strategy._divergence.timeout + 1)  # slow, not diverged: the others wait
        if not (self.case == "skip_log" and self._last_rank() and batch_idx == SKIP_STEP):
            self.log("extra", loss.detach(), sync_dist=True)
        self.log("loss", loss.detach(), sync_dist=True)
        return loss

    def train_dataloader(self):
        # Every rank reads its own loader (no distributed sampler): the last rank's can be one batch shorter.
        size = 6 if self.case == "fewer_batch" and self._last_rank() else 8
        return DataLoader(torch.randn(size, 4), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main():
    case, strategy_name, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
    options = {"divergence_timeout": float(sys.argv[4])} if len(sys.argv) > 4 else {}
    strategy = DDPStrategy(start_method="spawn" if strategy_name == "ddp_spawn" else "popen", **options)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    trainer.fit(Astray(case))
    print(f"finished rank {trainer.global_rank}", flush=True)


if __name__ == "__main__":
    main()
