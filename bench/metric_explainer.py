"""Cost of the metric explainer: recording where each key was logged, and `trainer.explain_metrics()` itself.

The record is made once per key per run (when the key is first logged), never per `self.log` call. This
measures, in one process: a steady-state `self.log` call, the first call of a new key (which records it,
including the stack walk), and one `explain_metrics()` over all keys. Per-step overhead of the whole loop
with logging on is `bench/overhead.py --case defaults`.

    python bench/metric_explainer.py             # 20 keys, 2000 steps
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    import fulmen as L
    import fulmen.results.result_collection as collection_module

    torch.set_num_threads(1)
    names = [f"metric_{i}" for i in range(args.keys)]
    timings: dict[str, list[float]] = {"first": [], "steady": [], "record": []}
    # A tree without the explainer (to compare the `self.log` cost with) has no `record_origin`.
    original_record = getattr(collection_module, "record_origin", None)

    def timed_record(*record_args):
        start = time.perf_counter()
        origin = original_record(*record_args)
        timings["record"].append(time.perf_counter() - start)
        return origin

    if original_record is not None:
        collection_module.record_origin = timed_record

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            loss = self.layer(batch[0]).mean()
            value = loss.detach()
            start = time.perf_counter()
            for name in names:
                self.log(name, value, on_step=True, on_epoch=True)
            elapsed = (time.perf_counter() - start) / len(names)
            timings["first" if batch_idx == 0 else "steady"].append(elapsed)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(args.steps, 4)), batch_size=1)
    explain = []
    for _ in range(args.repeats):
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu")
        trainer.fit(Module(), data)
        if original_record is not None:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                trainer.explain_metrics()
            explain.append(time.perf_counter() - start)
    if original_record is not None:
        collection_module.record_origin = original_record

    def us(values: list[float]) -> float:
        return statistics.median(values) * 1e6

    print(f"self.log, steady state (per call):                {us(timings['steady']):8.2f} µs")
    print(f"self.log, first call of a key (per call):         {us(timings['first']):8.2f} µs")
    if original_record is not None:
        print(f"  of which recording its origin (once per run):   {us(timings['record']):8.2f} µs")
        print(f"trainer.explain_metrics() over {args.keys} keys:            {statistics.median(explain) * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
