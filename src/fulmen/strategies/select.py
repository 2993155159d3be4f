"""Resolve the Trainer's hardware flags (accelerator, devices, strategy, precision) into a Strategy.

Owns: every check and error about those flags, in one place.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from fulmen.accelerators.accelerator import parse_devices_text
from fulmen.precision import select_precision
from fulmen.strategies.cluster_environments import ClusterEnvironment, LightningEnvironment
from fulmen.strategies.cluster_environments import detect_environment as detect_from_launcher
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.strategies.strategy import Strategy
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn
from fulmen.utilities.warnings import PossibleUserWarning

ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")
_DDP_NAMES: dict[str, dict[str, Any]] = {}
for _start, _name in (("popen", "ddp"), ("spawn", "ddp_spawn"), ("fork", "ddp_fork"), ("fork", "ddp_notebook")):
    _DDP_NAMES[_name] = {"start_method": _start}
    for _flag in (True, False):
        _DDP_NAMES[f"{_name}_find_unused_parameters_{str(_flag).lower()}"] = {
            "start_method": _start, "find_unused_parameters": _flag}

# Lightning's FSDP names and the options each one sets.
_FSDP_NAMES: dict[str, dict[str, Any]] = {"fsdp": {}, "fsdp_cpu_offload": {"cpu_offload": True}}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_accelerator(accelerator: Any) -> str:
    """Map `accelerator` (a name or a `fulmen.accelerators.Accelerator`) to "cpu", "cuda" or "mps"."""
    if not isinstance(accelerator, str) and _is_accelerator(accelerator):
        name = accelerator.name()
        if name not in ("cpu", "cuda", "mps"):
            raise MisconfigurationException(f"`accelerator={type(accelerator).__name__}()` names the device kind "
                                            f"{name!r}; fulmen runs on 'cpu', 'cuda' or 'mps'.")
        if not accelerator.is_available():
            raise MisconfigurationException(f"`accelerator={type(accelerator).__name__}()` was requested but "
                                            f"{name} is not available; use `accelerator='cpu'` or 'auto'.")
        return name
    if not isinstance(accelerator, str):
        raise ValueError(f"`accelerator` must be one of {', '.join(ACCELERATORS)} or an Accelerator instance; "
                         f"received {accelerator!r}.")
    name = accelerator.lower()
    if name not in ACCELERATORS:
        raise ValueError(
            f"`accelerator={accelerator!r}` is not a known accelerator; choose one of {', '.join(ACCELERATORS)}."
        )
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "gpu":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        raise MisconfigurationException("`accelerator='gpu'` was requested but no CUDA or MPS device is available; "
                                        "use `accelerator='cpu'` or 'auto'.")
    if name == "cuda" and not torch.cuda.is_available():
        raise MisconfigurationException("`accelerator='cuda'` was requested but CUDA is not available; "
                                        "use `accelerator='cpu'` or 'auto'.")
    if name == "mps" and not _mps_available():
        raise MisconfigurationException("`accelerator='mps'` was requested but MPS is not available; "
                                        "use `accelerator='cpu'` or 'auto'.")
    return name


def _is_accelerator(value: Any) -> bool:
    from fulmen.accelerators import Accelerator

    return isinstance(value, Accelerator)


def select_accelerator(accelerator: Any, root_device: torch.device) -> Any:
    """The Accelerator object in use (`trainer.accelerator`): the one given, else the one of the root device."""
    from fulmen.accelerators import accelerator_for

    return accelerator if _is_accelerator(accelerator) else accelerator_for(root_device.type)


def log_device_info(accelerator: Any) -> None:
    """Lightning's lines at Trainer creation: whether a GPU is available and used (fulmen runs no TPU: that line is
    always False), and a warning when a GPU sits unused."""
    from fulmen.accelerators import CUDAAccelerator, MPSAccelerator

    gpu_type = " (cuda)" if CUDAAccelerator.is_available() else " (mps)" if MPSAccelerator.is_available() else ""
    used = isinstance(accelerator, (CUDAAccelerator, MPSAccelerator))
    rank_zero_info(f"GPU available: {bool(gpu_type)}{gpu_type}, used: {used}")
    rank_zero_info("TPU available: False, using: 0 TPU cores")
    if CUDAAccelerator.is_available() and not isinstance(accelerator, CUDAAccelerator):
        rank_zero_warn("GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.",
                       category=PossibleUserWarning)
    if MPSAccelerator.is_available() and not isinstance(accelerator, MPSAccelerator):
        rank_zero_warn("MPS available but not used. You can set it by doing `Trainer(accelerator='mps')`.",
                       category=PossibleUserWarning)


def resolve_device_indices(devices: Any, device_type: str) -> list[int]:
    """Turn `devices` (int, list, "auto", "-1", "0,1") into a list of device indices."""
    available = torch.cuda.device_count() if device_type == "cuda" else 1
    if devices == "auto" or devices is None:
        return [0]
    devices = parse_devices_text(devices, "an int, a list of ints or 'auto'")
    if isinstance(devices, bool) or not isinstance(devices, (int, list, tuple)):
        raise MisconfigurationException(f"`devices={devices!r}` is invalid; use an int, a list of ints or 'auto'.")
    if isinstance(devices, int):
        if devices == -1:
            if device_type == "cpu":  # Lightning: "all devices" has no meaning for CPU processes
                raise TypeError("`devices=-1` (all devices) selected with `CPUAccelerator`: pass the number of "
                                "processes as an int > 0, e.g. `devices=2`.")
            return list(range(available))
        if devices < 1:
            raise MisconfigurationException(f"`devices={devices}` is invalid: use at least 1 device, or -1 for all.")
        if device_type != "cpu" and devices > available:
            raise MisconfigurationException(
                f"`devices={devices}` asks for more {device_type} devices than the {available} available."
            )
        return list(range(devices)) if device_type != "cpu" else [0] * devices
    indices = [int(index) for index in devices]
    if not indices:
        raise MisconfigurationException("`devices=[]` selects no device; list at least one device index.")
    if device_type != "cpu":
        missing = [index for index in indices if index >= available]
        if missing:
            raise MisconfigurationException(f"`devices={devices}` names {device_type} devices {missing}, "
                                            f"but only {available} exist.")
    return indices


def plugin_environment(plugins: Any) -> ClusterEnvironment | None:
    """The ClusterEnvironment among `Trainer(plugins=...)`, if any (at most one)."""
    found = [plugin for plugin in _as_list(plugins) if isinstance(plugin, ClusterEnvironment)]
    if len(found) > 1:
        raise MisconfigurationException(f"`plugins` holds {len(found)} cluster environments "
                                        f"({', '.join(type(env).__name__ for env in found)}); pass only one.")
    return found[0] if found else None


def _started_by_launcher(environment: ClusterEnvironment) -> bool:
    """Whether an external launcher (torchrun, srun, ...) started this process: then "auto" is DDP even for one
    device. A SLURM/LSF/MPI environment passed in `plugins` outside such a job is not one (Lightning then runs
    on a single device too)."""
    if not environment.creates_processes_externally:
        return False
    if isinstance(environment, LightningEnvironment):
        return True  # LOCAL_RANK is set: fulmen's launcher or the user started this process
    try:
        return bool(type(environment).detect())
    except NotImplementedError:
        return True  # Kubeflow cannot be detected: passing it says the job runs there


def _as_list(plugins: Any) -> list[Any]:
    return list(plugins) if isinstance(plugins, (list, tuple)) else [plugins] if plugins is not None else []


def select_strategy(accelerator: Any = "auto", devices: Any = "auto", strategy: Any = "auto",
                    num_nodes: int = 1, precision: Any = None,
                    cluster_environment: ClusterEnvironment | None = None) -> Strategy:
    """Build the Strategy (with its Precision) that `Trainer(...)` flags describe; `cluster_environment` (from
    `plugins`) replaces the detected one."""
    device_type = resolve_accelerator(accelerator)
    indices = resolve_device_indices(devices, device_type)

    def detect_environment(num_nodes: int, devices_per_node: int) -> ClusterEnvironment:
        return cluster_environment or detect_from_launcher(num_nodes, devices_per_node)

    if isinstance(strategy, Strategy):
        configure = getattr(strategy, "configure_from_trainer_flags", None)
        if configure is not None:  # a DDPStrategy(...) instance still takes its devices from the Trainer
            devices_list = [torch.device(device_type, index) if device_type == "cuda" else torch.device(device_type)
                            for index in indices]
            configure(devices_list, num_nodes, detect_environment(num_nodes, len(indices)),
                      select_precision(precision, device_type))
        return strategy
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise MisconfigurationException(f"`num_nodes={num_nodes!r}` is invalid; use an int >= 1.")
    if not isinstance(strategy, str):
        raise MisconfigurationException(f"`strategy={strategy!r}` is invalid; use 'auto', a strategy name or a "
                                        "Strategy instance.")
    precision_plugin = select_precision(precision, device_type)
    devices_list = [torch.device(device_type, index) if device_type == "cuda" else torch.device(device_type)
                    for index in indices]
    environment = detect_environment(num_nodes, len(indices))
    if strategy == "auto":
        several = len(indices) > 1 or num_nodes > 1 or _started_by_launcher(environment)
        strategy = "ddp" if several else "single_device"
    if strategy == "single_device":
        if len(indices) > 1 or num_nodes > 1:
            raise MisconfigurationException(f"strategy='single_device' runs on one device; `devices={devices!r}, "
                                            f"num_nodes={num_nodes}` asks for more. Use strategy='ddp'.")
        return SingleDeviceStrategy(devices_list[0], precision_plugin=precision_plugin)
    if strategy in _FSDP_NAMES:
        from fulmen.strategies.fsdp import FSDPStrategy

        fsdp = FSDPStrategy(parallel_devices=devices_list, cluster_environment=environment,
                            precision_plugin=precision_plugin, **_FSDP_NAMES[strategy])
        fsdp.num_nodes = num_nodes
        return fsdp
    options = _DDP_NAMES.get(strategy)
    if options is None:
        known = ", ".join(["auto", "single_device", *_DDP_NAMES, *_FSDP_NAMES])
        raise ValueError(f"`strategy={strategy!r}` is not a known strategy; use one of {known}.")
    from fulmen.strategies.ddp import DDPStrategy

    return DDPStrategy(parallel_devices=devices_list, cluster_environment=environment, num_nodes=num_nodes,
                       precision_plugin=precision_plugin, **options)


def apply_plugins(strategy: Strategy, plugins: Any, sync_batchnorm: bool = False) -> None:
    """Install `Trainer(plugins=..., sync_batchnorm=...)`: a CheckpointIO (where checkpoints are stored), a
    Precision, and/or a LayerSync (`sync_batchnorm=True` is `TorchSyncBatchNorm`). A ClusterEnvironment was
    already given to `select_strategy` (see `plugin_environment`)."""
    from fulmen.checkpoint_io import CheckpointIO
    from fulmen.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
    from fulmen.precision import Precision

    layer_sync: LayerSync | None = TorchSyncBatchNorm() if sync_batchnorm else None
    for plugin in _as_list(plugins):
        if isinstance(plugin, ClusterEnvironment):
            continue
        if isinstance(plugin, CheckpointIO):
            strategy.checkpoint_io = plugin
        elif isinstance(plugin, Precision):
            strategy.precision_plugin = plugin
        elif isinstance(plugin, LayerSync):
            if sync_batchnorm and not isinstance(plugin, TorchSyncBatchNorm):
                raise MisconfigurationException(
                    f"`Trainer(sync_batchnorm=True)` asks for TorchSyncBatchNorm, but `plugins` also holds "
                    f"{type(plugin).__name__}; keep only one layer-sync plugin."
                )
            layer_sync = plugin
        else:
            raise TypeError(f"`plugins` holds {type(plugin).__name__}; fulmen accepts CheckpointIO, Precision, "
                            "LayerSync and ClusterEnvironment instances (from `fulmen.plugins`).")
    if layer_sync is not None:
        strategy.set_layer_sync(layer_sync)


def apply_determinism(deterministic: bool | str | None, benchmark: bool | None, device: torch.device) -> None:
    """Apply `Trainer(deterministic=..., benchmark=...)` to torch and cuDNN (cuDNN's flag is set on any device,
    as Lightning does; `benchmark=None` leaves it as the session has it unless `deterministic` asks for False)."""
    if deterministic is not None:
        torch.use_deterministic_algorithms(bool(deterministic), warn_only=deterministic == "warn")
        if deterministic:
            # cuBLAS needs a fixed workspace to be deterministic.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic and benchmark is None:
        benchmark = False
    if benchmark is not None:
        torch.backends.cudnn.benchmark = bool(benchmark)
    if device.type == "cuda" and deterministic:
        torch.backends.cudnn.deterministic = True
