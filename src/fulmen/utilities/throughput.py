"""Throughput bookkeeping (`Throughput`), FLOP counting (`measure_flops`) and a device's peak FLOP/s
(`get_available_flops`) — what `fulmen.callbacks.ThroughputMonitor` logs, usable on their own too."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import torch

from fulmen.utilities.rank_zero import rank_zero_warn

__all__ = ["Throughput", "get_available_flops", "measure_flops"]


class Throughput:
    """Rolling throughput over the last `window_size` updates.

    `update` takes running totals (elapsed time, batches, samples, optionally item lengths and the FLOPs of
    the latest batch); `compute` returns `time`, `batches`, `samples` (`lengths`) and, once the window is
    full, `device/batches_per_sec`, `device/samples_per_sec` (`device/items_per_sec`), `device/flops_per_sec`
    and `device/mfu` (needs `available_flops`). With `world_size > 1` the global rates (`batches_per_sec`,
    `samples_per_sec`, `items_per_sec`, `flops_per_sec`) are added: the per-device rate times `world_size`.

    Args:
        available_flops: peak FLOP/s of one device, for `device/mfu` (see `get_available_flops`).
        world_size: number of devices; all are assumed to run at the same rate.
        window_size: how many updates the rates average over (at least 2).
        separator: joins `device` and the metric name.
    """

    def __init__(self, available_flops: float | None = None, world_size: int = 1, window_size: int = 100,
                 separator: str = "/") -> None:
        if world_size < 1:
            raise ValueError(f"`Throughput(world_size={world_size})` is invalid; use the number of devices (>= 1).")
        if window_size < 2:
            raise ValueError(f"`Throughput(window_size={window_size})` is invalid; a rate needs a window of >= 2.")
        self.available_flops = available_flops
        self.world_size = world_size
        self.separator = separator
        self._time: _IncreasingWindow = _IncreasingWindow(window_size)
        self._batches: _IncreasingWindow = _IncreasingWindow(window_size)
        self._samples: _IncreasingWindow = _IncreasingWindow(window_size)
        self._lengths: _IncreasingWindow = _IncreasingWindow(window_size)
        self._flops: deque[float] = deque(maxlen=window_size)

    def update(self, *, time: float, batches: int, samples: int, lengths: int | None = None,
               flops: float | None = None) -> None:
        """Record the running totals after one more batch.

        Args:
            time: seconds elapsed since the start (must grow with every call).
            batches, samples: batches and samples seen so far on this device (must grow; samples >= batches).
            lengths: items (e.g. tokens) seen so far (>= samples), if they are counted.
            flops: FLOPs of this device's latest batch (see `measure_flops`).
        """
        if samples < batches:
            raise ValueError(f"`samples` ({samples}) must be at least `batches` ({batches}): each batch holds one "
                             "sample or more.")
        if lengths is not None and lengths < samples:
            raise ValueError(f"`lengths` ({lengths}) must be at least `samples` ({samples}): each sample holds one "
                             "item or more.")
        self._time.append(time)
        self._batches.append(batches)
        self._samples.append(samples)
        if lengths is not None:
            self._lengths.append(lengths)
            if len(self._lengths) != len(self._samples):
                raise RuntimeError(f"`lengths` was passed in {len(self._lengths)} of {len(self._samples)} updates; "
                                   "pass it in every update or in none.")
        if flops is not None:
            self._flops.append(flops * self.world_size)

    def compute(self) -> dict[str, int | float]:
        """The totals of the latest update, and the rates over the window once it is full."""
        sep, world_size = self.separator, self.world_size
        metrics: dict[str, int | float] = {"time": self._time[-1], "batches": self._batches[-1],
                                           "samples": self._samples[-1]}
        if self._lengths:
            metrics["lengths"] = self._lengths[-1]
        several = world_size > 1
        elapsed = self._time[-1] - self._time[0] if self._time else 0.0
        if self._time.full:
            batches_per_sec = (self._batches[-1] - self._batches[0]) / elapsed
            samples_per_sec = (self._samples[-1] - self._samples[0]) / elapsed
            metrics[f"device{sep}batches_per_sec"] = batches_per_sec
            metrics[f"device{sep}samples_per_sec"] = samples_per_sec
            if several:
                metrics["batches_per_sec"] = batches_per_sec * world_size
                metrics["samples_per_sec"] = samples_per_sec * world_size
            if self._lengths.full:
                items_per_sec = (self._lengths[-1] - self._lengths[0]) / elapsed
                metrics[f"device{sep}items_per_sec"] = items_per_sec
                if several:
                    metrics["items_per_sec"] = items_per_sec * world_size
        if len(self._flops) == self._flops.maxlen:
            # The first entry's FLOPs were spent before the window's first timestamp.
            flops_per_sec = (sum(self._flops) - self._flops[0]) / elapsed
            if several:
                metrics["flops_per_sec"] = flops_per_sec
            metrics[f"device{sep}flops_per_sec"] = flops_per_sec / world_size
            if self.available_flops:
                metrics[f"device{sep}mfu"] = flops_per_sec / world_size / self.available_flops
        return metrics

    def reset(self) -> None:
        """Forget every update (start a new measurement)."""
        for window in (self._time, self._batches, self._samples, self._lengths, self._flops):
            window.clear()


class _IncreasingWindow(deque):
    """The last `maxlen` values of a running total, which must strictly increase."""

    def __init__(self, maxlen: int) -> None:
        super().__init__(maxlen=maxlen)

    @property
    def full(self) -> bool:
        return len(self) == self.maxlen

    def append(self, value: Any) -> None:
        if self and self[-1] >= value:
            raise ValueError(f"Running totals must increase with every update: got {value} after {self[-1]}.")
        super().append(value)


def measure_flops(model: torch.nn.Module, forward_fn: Callable[[], torch.Tensor],
                  loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
    """FLOPs of one call of `forward_fn` (forward only), or with `loss_fn` of forward + loss + backward.

    Cheapest on a model built under `with torch.device("meta"):` with meta inputs: nothing is computed,
    only counted (torch's `FlopCounterMode`). `model` is the module `forward_fn` runs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        output = forward_fn()
        if loss_fn is not None:
            loss_fn(output).backward()
    return counter.get_total_flops()


# Peak dense FLOP/s per device from the vendors' data sheets; "tf32" is float32 matmuls run as TensorFloat-32.
_GPU_FLOPS: dict[str, dict[Any, float]] = {
    "h200": {torch.float64: 34e12, torch.float32: 67e12, "tf32": 989e12, torch.bfloat16: 1979e12,
             torch.float16: 1979e12, torch.int8: 3958e12},
    "h100 sxm": {torch.float64: 33.5e12, torch.float32: 66.9e12, "tf32": 494.7e12, torch.bfloat16: 989.4e12,
                 torch.float16: 989.4e12, torch.int8: 1978.9e12},
    "h100 pcie": {torch.float64: 25.6e12, torch.float32: 51.2e12, "tf32": 378e12, torch.bfloat16: 756e12,
                  torch.float16: 756e12, torch.int8: 1513e12},
    "a100": {torch.float64: 9.7e12, torch.float32: 19.5e12, "tf32": 156e12, torch.bfloat16: 312e12,
             torch.float16: 312e12, torch.int8: 624e12},
    "a10g": {torch.float32: 31.2e12, "tf32": 62.5e12, torch.bfloat16: 125e12, torch.float16: 125e12,
             torch.int8: 250e12},
    "l4": {torch.float32: 30.3e12, "tf32": 60e12, torch.bfloat16: 121e12, torch.float16: 121e12, torch.int8: 242e12},
    "l40": {torch.float32: 90.5e12, "tf32": 90.5e12, torch.bfloat16: 181e12, torch.float16: 181e12,
            torch.int8: 362e12},
    "t4": {torch.float32: 8.1e12, torch.float16: 65e12, torch.int8: 130e12},
    "v100": {torch.float64: 7.8e12, torch.float32: 15.7e12, torch.float16: 125e12},
    "rtx 4090": {torch.float32: 82.6e12, "tf32": 82.6e12, torch.bfloat16: 82.6e12, torch.float16: 82.6e12,
                 torch.int8: 660.6e12},
    "rtx 3090": {torch.float32: 35.6e12, "tf32": 35.6e12, torch.bfloat16: 35.6e12, torch.float16: 35.6e12,
                 torch.int8: 284e12},
}


def _gpu_key(device_name: str) -> str | None:
    name = device_name.lower()
    if "h100" in name:
        return "h100 pcie" if ("pcie" in name or "hbm2e" in name) else "h100 sxm"
    if "rtx" in name:
        for key in ("rtx 4090", "rtx 3090"):
            if key in name and "ti" not in name.split(key)[1]:
                return key
        return None
    for key in ("h200", "a100", "a10g", "l40", "l4", "t4", "v100"):
        if key in name:
            return key
    return None


def get_available_flops(device: torch.device, dtype: torch.dtype | str) -> int | None:
    """The peak FLOP/s of one `device` computing in `dtype` (an optimistic bound for MFU), or None (with a
    warning) when fulmen has no figure for the device; None without a warning on the CPU and MPS."""
    if device.type != "cuda":
        return None
    device_name = torch.cuda.get_device_name(device)
    key = _gpu_key(device_name)
    if key is None:
        rank_zero_warn(f"FLOPs not found for {device_name!r}: fulmen has no peak FLOP/s figure for this GPU.")
        return None
    table = _GPU_FLOPS[key]
    if dtype is torch.float32 and torch.get_float32_matmul_precision() != "highest" and "tf32" in table \
            and torch.cuda.get_device_capability(device)[0] >= 8:
        dtype = "tf32"  # float32 matmuls run as TensorFloat-32 on Ampere and later unless "highest" is asked for
    if dtype not in table:
        rank_zero_warn(f"{device_name!r} does not support {dtype} (or fulmen has no figure for it).")
        return None
    return int(table[dtype])


def compute_dtype(precision_plugin: Any) -> torch.dtype:
    """The dtype the matmuls of a run with this precision plugin compute in."""
    return getattr(precision_plugin, "_dtype", None) or torch.float32
