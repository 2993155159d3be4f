"""Exact resume: fit continues inside the epoch a checkpoint was taken in, as if it had never stopped.

Owns: the one step between `on_train_start` and the first batch trained after restoring a checkpoint
that records where the fit loop was (`FitLoop.resume_state`: phase, batches done, RNG states). It
re-creates the interrupted epoch's order from the RNG that epoch began with, draws and drops the
batches already trained, puts back the RNG of the moment of saving, and finishes what the checkpoint
interrupted (the rest of a batch, or of an epoch end). The fit loop then goes on as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.loops.batch_iterator import iterate_batches, profiled_batches
from fulmen.utilities.seed import restore_rng_states

if TYPE_CHECKING:
    from fulmen.loops.fit_loop import Batches, FitLoop

_EXHAUSTED = object()
EPOCH_END_FINISHED = "epoch_end_finished"  # an epoch-end checkpoint whose epoch end the fit loop has finished


def inside_epoch(saved: dict[str, Any] | None) -> bool:
    """Whether `saved` was taken inside an epoch, which then finishes even if fit was about to stop."""
    return saved is not None and saved["phase"] != "between_batches"


def resume_epoch(loop: FitLoop, saved: dict[str, Any]) -> Batches | None:
    """Bring `loop` to where `saved` was taken; return the batches its epoch has left to train.

    A checkpoint taken at an epoch boundary (or at an epoch's end, which is finished here) continues
    with the next epoch, started from the RNG of the moment of saving; None when fit is then done.
    """
    if saved["phase"] == "epoch_end":
        finish_epoch_end(loop, saved)
    elif saved["phase"] != EPOCH_END_FINISHED and saved["batches_done"] > 0:
        return _continue_epoch(loop, saved)
    if loop.done():
        return None
    train_loader, num_batches, generators = loop.start_epoch()
    restore_rng_states(saved["rng"], generators)
    return loop.open_epoch(train_loader, num_batches, generators)


def _continue_epoch(loop: FitLoop, saved: dict[str, Any]) -> Batches:
    """Mid-epoch: the same batch order, the RNG as saved, the saved batch finished; the batches after it."""
    train_loader, num_batches, generators = loop.start_epoch()
    # The interrupted epoch's order comes from the RNG as it was when that epoch began (on_train_epoch_start ran then).
    restore_rng_states(saved["epoch_start_rng"], generators)
    loop.epoch_start_rng = saved["epoch_start_rng"]
    loop.epoch_finished = False
    start = loop.batches_done = saved["batches_done"]
    batches = iter(train_loader)
    for _ in range(start):  # drawn and dropped: they were trained before the checkpoint
        if next(batches, _EXHAUSTED) is _EXHAUSTED:
            break
    restore_rng_states(saved["rng"], generators)
    loop.total_batch_idx = saved["total_batch_idx"]
    last_idx, is_last = start - 1, start >= num_batches
    loop.epoch_finished = is_last
    if saved["phase"] in ("batch_end", "validation"):
        # Taken in on_train_batch_end or during validation: what followed runs now (validation only if not begun).
        accumulating = loop.accumulating(last_idx, is_last)
        loop.finish_batch(last_idx, is_last, accumulating, validate=saved["phase"] == "batch_end")
    if loop.stop_due():
        return iter(())
    from fulmen.loops.fit_loop import TRAIN_NEXT  # deferred: fit_loop imports this module

    return iterate_batches(profiled_batches(batches, loop.hooks.active_profiler, TRAIN_NEXT), num_batches, start=start)


def finish_epoch_end(loop: FitLoop, saved: dict[str, Any]) -> dict[str, Any]:
    """Taken in on_train_epoch_end: the hook is not run again; what follows it runs with the saved metrics and RNG.
    Returns the resume state from then on (phase `EPOCH_END_FINISHED`: the next epoch starts from the saved RNG)."""
    loop.phase = "epoch_end"
    loop.epoch_finished = saved["epoch_finished"]
    loop.metrics.train_epoch_end_reached()
    loop.metrics.callback_metrics.update(saved["callback_metrics"])  # what the plateau schedulers read
    restore_rng_states(saved["rng"], [])
    loop.close_epoch()
    return {**saved, "phase": EPOCH_END_FINISHED}
