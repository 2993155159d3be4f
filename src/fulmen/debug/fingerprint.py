"""Run fingerprints: `Trainer(fingerprint=True)` records, at every optimizer step of `fit`, the loss, the gradient
norm and the random number generators' state, so `python -m fulmen diff RUN_A RUN_B` can name the first step and
the component where two runs that should be identical diverged.

Cost: no `.item()` and no host-device sync per step; the values stay tensors and are written in blocks (every 256
steps, and when fit ends or fails). On `bench/overhead.py`'s small CPU model about 16 µs per step inside the loop,
most of it the gradient norm (`bench/fingerprint.py --in-loop`; docs/debugging.md has the figures). What is
recorded and where:

- `loss`: the loss of the last backward before the step (automatic: `training_step`'s loss, divided by
  `accumulate_grad_batches`; manual: what was passed to `manual_backward`); NaN when no backward ran.
- `grad_norm`: the total 2-norm of the stepped optimizer's gradients, read after the closure, unscaling,
  `on_before_optimizer_step` and clipping; when gradients were clipped by norm, clipping's own (pre-clip) norm.
- `rng_torch`: a 64-bit digest of the CPU generator (seed, draw position, first state words and normal-sample cache;
  its state is kept per step and hashed per block); `rng_cuda`: the CUDA generator's seed and Philox offset;
  `rng_python`/`rng_numpy`: digests of `random` and NumPy's global state, sampled every `SAMPLE_EVERY` steps
  (reading them costs tens of microseconds).
- `step` (`trainer.global_step` before the step), `epoch`, `batch_idx`, `optimizer` (index; manual optimization
  records each `optimizer.step()`).

Every rank writes its own file (`fingerprint_file.file_name`), in a directory rank 0 chooses.
"""

from __future__ import annotations

import contextlib
import os
import random
import struct
import sys
from array import array
from collections.abc import Iterator
from hashlib import blake2b
from typing import Any

import torch

from fulmen.debug.fingerprint_file import FingerprintWriter, file_name
from fulmen.precision import Precision

SAMPLE_EVERY = 128
_MAX_ROWS = 256  # rows held (as tensors) before a block is written
_FLATTEN_LIMIT = 1 << 20  # gradient elements up to which a CPU model's norm is taken over one flat copy
_MASK = (1 << 64) - 1


class FingerprintSetting:
    """The validated `Trainer(fingerprint=...)` value: True (the run directory) or a directory path."""

    def __init__(self, setting: Any) -> None:
        if setting is True:
            self.directory: str | None = None
        elif isinstance(setting, (str, os.PathLike)) and os.fspath(setting):
            directory = os.fspath(setting)
            if os.path.isfile(directory):
                raise ValueError(f"`Trainer(fingerprint={directory!r})`: that path is a file. Pass the directory to "
                                 "write `fingerprints.bin` in, or True for the run directory (the logger's `log_dir`).")
            self.directory = directory
        else:
            raise TypeError(f"`Trainer(fingerprint={setting!r})` is not valid: pass True to write `fingerprints.bin` "
                            "in the run directory (the logger's `log_dir`, else `default_root_dir`), a directory "
                            "path to write it there, or False to record nothing.")

    @contextlib.contextmanager
    def recording(self, trainer: Any, run: Any) -> Iterator[None]:
        """Record fit's optimizer steps while the block runs (the caller runs the fit loop inside it)."""
        recorder = _Recorder(self, trainer, run)
        try:
            yield
        finally:
            recorder.close()


class _Recorder:
    """Wraps the strategy's backward (to see the loss) and its before-step callback (to read the gradients)."""

    def __init__(self, setting: FingerprintSetting, trainer: Any, run: Any) -> None:
        strategy, state = trainer.strategy, trainer._state
        directory = setting.directory if setting.directory is not None else trainer.log_dir
        directory = strategy.broadcast(directory)  # rank 0 decides where every rank writes
        rank = trainer.global_rank
        resuming = run.ckpt_path is not None or state.global_step > 0
        self.writer = FingerprintWriter(os.path.join(directory, file_name(rank)), append=resuming)
        self.writer.write_meta({
            "event": "resume" if resuming else "start", "step": state.global_step, "epoch": state.current_epoch,
            "checkpoint": None if run.ckpt_path is None else os.fspath(run.ckpt_path), "rank": rank,
            "world_size": trainer.world_size, "torch": torch.__version__, "sample_every": SAMPLE_EVERY})
        self.strategy = strategy
        self.pending: list[tuple] = []
        self._saved = {name: strategy.__dict__[name] for name in ("backward", "_before_step")
                       if name in strategy.__dict__}
        optimizers = trainer._optimization.optimizers
        self.max_rows = _MAX_ROWS
        self.dtensors = any(hasattr(p, "device_mesh") for opt in optimizers for group in opt.param_groups
                            for p in group["params"])
        precision = strategy.precision_plugin
        precision._clip_norm = None  # a norm left from an earlier run is not this run's
        strategy.backward = self._wrap_backward(strategy.backward, precision)
        strategy._before_step = self._wrap_before_step(strategy._before_step, trainer, run, optimizers)

    def _wrap_backward(self, backward: Any, precision: Any) -> Any:
        slot = self.loss_slot = [None]
        if getattr(precision, "scaler", None) is None and type(precision).post_backward is Precision.post_backward:
            # The strategy returns the loss it backpropagated, detached: recording it costs nothing more.
            def backward_seeing_loss(closure_loss: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                slot[0] = loss = backward(closure_loss, *args, **kwargs)
                return loss
        else:  # a scaler returns the scaled loss: record the loss itself
            def backward_seeing_loss(closure_loss: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                slot[0] = closure_loss.detach()
                return backward(closure_loss, *args, **kwargs)

        return backward_seeing_loss

    def _wrap_before_step(self, before_step: Any, trainer: Any, run: Any, optimizers: list[Any]) -> Any:
        # Everything the per-step function reads is bound here once: it runs at every optimizer step.
        slot, pending, max_rows, flush = self.loss_slot, self.pending, self.max_rows, self.flush
        state, loop, precision = trainer._state, run.fit_loop, self.strategy.precision_plugin
        indices = {id(optimizer): index for index, optimizer in enumerate(optimizers)}
        params: dict[int, tuple[int, list[torch.Tensor]]] = {}
        cpu_state = _cpu_state_function()
        device = self.strategy.root_device
        cuda_seed = cuda_offset = int  # int() is 0: no CUDA generator in use
        generators = torch.cuda.default_generators if device.type == "cuda" else ()  # filled once CUDA is up
        index = device.index if device.index is not None else 0
        if index < len(generators):
            try:
                generators[index].get_offset()
            except RuntimeError:  # a generator without a Philox offset: rng_cuda stays 0
                pass
            else:
                cuda_seed, cuda_offset = generators[index].initial_seed, generators[index].get_offset
        grad_norm, self.norm_mode = _norm_function(optimizers, device, self.dtensors)
        vector_norms = self.norm_mode == "norms"
        unsampled = (0, 0)

        def before_step_recording(optimizer: Any) -> None:
            if before_step is not None:
                before_step(optimizer)  # on_before_optimizer_step, clipping
            loss = slot[0]
            slot[0] = None
            clipped = precision._clip_norm
            if clipped is None:
                key, groups = id(optimizer), optimizer.param_groups
                entry = params.get(key)
                if entry is None or entry[0] != len(groups):  # e.g. a finetuning callback added a group
                    entry = params[key] = (len(groups), [p for group in groups for p in group["params"]])
                grads = [grad for p in entry[1] if (grad := p.grad) is not None]
                norm = grad_norm(grads) if grads else None
            else:  # clipping by norm already measured it
                precision._clip_norm = None
                norm = _local(clipped).reshape(1) if vector_norms else _local(clipped)
            step = state.global_step
            pending.append((step, state.current_epoch, loop.batches_done, indices.get(id(optimizer), -1), loss,
                            norm, cpu_state(), cuda_seed(), cuda_offset(),
                            _host_digests() if step % SAMPLE_EVERY == 0 else unsampled))
            if len(pending) >= max_rows:
                flush()

        return before_step_recording

    def flush(self) -> None:
        """Materialise the pending rows (one transfer per block, not per step) and write them."""
        pending = self.pending
        if not pending:
            return
        steps, epochs, batches, opts, losses, norms, states, seeds, offsets, host = zip(*pending)
        pending.clear()
        self.writer.write_rows({
            "step": steps, "epoch": epochs, "batch_idx": batches, "optimizer": opts,
            "loss": _loss_values(losses), "grad_norm": _total_norms(norms, self.norm_mode),
            "rng_torch": _state_digests(states),
            "rng_cuda": [_signed((seed * 0x9E3779B97F4A7C15 + offset) & _MASK) if seed or offset else 0
                         for seed, offset in zip(seeds, offsets)],
            "rng_python": [pair[0] for pair in host], "rng_numpy": [pair[1] for pair in host]})

    def close(self) -> None:
        """Write what is pending and put the strategy's methods back (also when fit failed)."""
        strategy = self.strategy
        for name in ("backward", "_before_step"):
            strategy.__dict__.pop(name, None)
        strategy.__dict__.update(self._saved)
        try:
            self.flush()
        finally:
            self.writer.close()


def _loss_values(losses: tuple) -> list[float]:
    present = [loss if loss.dim() == 0 else loss.reshape(-1)[0] for loss in losses if loss is not None]
    values = iter(torch.stack(present).double().cpu().tolist() if present else ())
    return [float("nan") if loss is None else next(values) for loss in losses]


def _norm_function(optimizers: list[Any], device: torch.device, dtensors: bool) -> tuple[Any, str]:
    """How a step's gradient norm is taken, chosen once: the per-step function and what it returns, "norm" (the
    norm, a 0-dim tensor) or "norms" (the per-tensor norms, combined per block)."""
    parameters = [p for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]]
    numel = sum(p.numel() for p in parameters)
    flatten = getattr(torch._C._nn, "flatten_dense_tensors", None)
    if (device.type == "cpu" and not dtensors and flatten is not None and len({p.dtype for p in parameters}) <= 1
            and numel <= _FLATTEN_LIMIT):
        # Small CPU models: one flat copy and one norm cost less than a norm per tensor (CPU has no fused kernel).
        vector_norm = torch.linalg.vector_norm
        return (lambda grads: vector_norm(flatten(grads))), "norm"
    foreach_norm, stack = torch._foreach_norm, torch.stack
    if dtensors:
        return (lambda grads: stack(foreach_norm([_local(grad) for grad in grads]))), "norms"
    return (lambda grads: stack(foreach_norm(grads))), "norms"  # CUDA: one fused kernel for all tensors


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor  # a DTensor's shard on this rank


def _total_norms(entries: tuple, mode: str) -> list[float]:
    """Each step's total 2-norm (0 when no gradient); per-tensor norms are combined in float64 on the CPU."""
    present = [entry for entry in entries if entry is not None]
    if not present:
        return [0.0] * len(entries)
    if mode == "norm":
        totals = torch.stack(present).double().cpu().tolist()
    else:
        squares = torch.cat(present).double().cpu().square()
        owners = torch.repeat_interleave(torch.arange(len(present)), torch.tensor([len(entry) for entry in present]))
        totals = torch.zeros(len(present), dtype=torch.float64).index_add_(0, owners, squares).sqrt().tolist()
    values = iter(totals)
    return [0.0 if entry is None else next(values) for entry in entries]


_MULTIPLIERS: dict[int, torch.Tensor] = {}


def _cpu_state_function() -> Any:
    """What each step keeps of the CPU generator: its state tensor (digested per block)."""
    return torch.default_generator.get_state


_MT_STATE_BYTES = 5056
# Torch's Mersenne Twister state: what is digested is 128 bytes of it - seed, draw position, the first state words
# (which all change when it regenerates) and the normal-sample cache - without the padding bytes of its struct
# (they carry no state and may hold anything).
_MT_HEAD, _MT_CACHE = 88, 5016
_PADDING = ((88 + 28, 88 + 32), (88 + 37, 128))


def _state_digests(states: tuple) -> list[int]:
    """A 64-bit digest of each CPU generator state (the tensors `get_state()` returned, one per step): the sum of its
    8-byte words times fixed odd constants (so a change of any one word always changes the digest), for the whole
    block in one matrix-vector product. Keeping the state tensors per step costs less inside the loop than copying
    out the digested bytes (`bench/fingerprint.py --in-loop`)."""
    stacked = torch.stack(states)
    if stacked.shape[1] == _MT_STATE_BYTES:
        stacked = torch.cat((stacked[:, :_MT_HEAD], stacked[:, _MT_CACHE:]), 1)
        for start, stop in _PADDING:
            stacked[:, start:stop] = 0
    elif stacked.shape[1] % 8:  # another layout: all of it
        stacked = torch.nn.functional.pad(stacked, (0, 8 - stacked.shape[1] % 8))
    words = stacked.view(torch.int64)
    multipliers = _MULTIPLIERS.get(words.shape[1])
    if multipliers is None:
        constants = [_signed(((index + 1) * 0x9E3779B97F4A7C15 ^ 0xD1B54A32D192ED03) & _MASK | 1)
                     for index in range(words.shape[1])]
        multipliers = _MULTIPLIERS[words.shape[1]] = torch.tensor(constants, dtype=torch.int64)
    return torch.mv(words, multipliers).tolist()  # int64 arithmetic wraps: a hash modulo 2**64


def _host_digests() -> tuple[int, int]:
    """Digests of Python's `random` and (when imported) NumPy's global generator."""
    _, words, gauss = random.getstate()
    digest = blake2b(array("I", words).tobytes(), digest_size=8)
    digest.update(repr(gauss).encode())
    numpy = sys.modules.get("numpy")
    numpy_digest = 0
    if numpy is not None:
        _, keys, position, has_gauss, cached = numpy.random.get_state()
        hashed = blake2b(keys.tobytes(), digest_size=8)
        hashed.update(struct.pack("<iid", position, has_gauss, cached))
        numpy_digest = _digest_int(hashed)
    return _digest_int(digest), numpy_digest


def _digest_int(digest: Any) -> int:
    return int.from_bytes(digest.digest(), "little", signed=True)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
