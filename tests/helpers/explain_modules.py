"""Helpers for the metric explainer tests: snapshot masking, and a module for the 2-process test that logs its
rank with and without `sync_dist` (each rank writes `trainer.explain_metrics()` to OUT_DIR/explain_rank<r>.txt)."""

import inspect
import json
import os
import re

from helpers.tiny import TinyModule


def masked(text):
    """The explanation with values and call-site line numbers masked, so it reads the same on every machine."""
    text = re.sub(r"= -?[0-9][0-9.e+-]*", "= <v>", text)
    return re.sub(r"\((\w+\.py):\d+\)", r"(\1:<line>)", text)


def snapshot(text):
    return inspect.cleandoc(text)


class RankLoggingModule(TinyModule):
    def __init__(self, out_dir):
        super().__init__()
        self.out_dir = out_dir

    def training_step(self, batch, batch_idx):
        rank = float(self.global_rank)
        self.log("rank_mean", rank, on_step=True, on_epoch=True, sync_dist=True)
        self.log("rank_max", rank, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")
        self.log("rank_own", rank, on_step=False, on_epoch=True)
        # Rank 1 weighs three times as much as rank 0: the synced mean is 0.75, not the mean of the ranks' 0.5.
        self.log("rank_weighted", rank, on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=1 + 2 * self.global_rank)
        self.log("rank_zero", rank, on_step=False, on_epoch=True, sync_dist=True, rank_zero_only=True)
        return super().training_step(batch, batch_idx)

    def on_fit_end(self):
        explanation = self.trainer.explain_metrics()
        values = {produced.key: produced.value for entry in explanation.entries for produced in entry.produced}
        with open(os.path.join(self.out_dir, f"explain_rank{self.global_rank}.txt"), "w") as file:
            file.write(str(explanation) + "\n" + json.dumps(values))
