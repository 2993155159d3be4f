"""Checkpoints of an FSDP2-sharded module: full files and `torch.distributed.checkpoint` directories.

Owns: getting and setting model/optimizer states through `torch.distributed.checkpoint.state_dict` (full on
rank 0, or this rank's DTensor shards), the sharded directory layout (Lightning's: the DCP shards of "model" and
"optimizer_<i>" plus `meta.pt` with everything else), saving it atomically, loading it resharded to the current
world size, and converting it to one Lightning-layout file (`python -m fulmen convert-checkpoint`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

METADATA_FILE = "meta.pt"
_WRAPPER_PREFIX = "_checkpoint_wrapped_module."


def _options(full: bool, **extra: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # cpu_offload=True with a full state dict: gathered to rank 0's CPU only, so no rank holds two full copies.
    return StateDictOptions(full_state_dict=full, cpu_offload=full, **extra)


def model_state(module: nn.Module, full: bool) -> dict[str, Any]:
    """Full: the module's whole state dict on rank 0 (empty on the others); else this rank's DTensor shards."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(full))


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, full: bool) -> dict[str, Any]:
    """Full: rank 0 gets a plain `optimizer.state_dict()` layout (states keyed by parameter index), so a
    single-process run loads it; sharded: states keyed by parameter name holding DTensor shards."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(module, optimizer, options=_options(full))
    if full:
        return keyed_by_index(state) if state else {}
    return state


def keyed_by_index(state: dict[str, Any]) -> dict[str, Any]:
    """A name-keyed optimizer state dict in torch's plain layout: parameters numbered across the groups."""
    order = [name for group in state["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(order)}
    return {"state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**group, "params": [index[name] for name in group["params"]]}
                             for group in state["param_groups"]]}


def _keyed_by_name(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    names = {id(p): name.replace(_WRAPPER_PREFIX, "") for name, p in module.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    saved = [i for group in state["param_groups"] for i in group["params"]]
    if len(saved) != len(order):
        raise ValueError(f"The checkpoint's optimizer state has {len(saved)} parameters, the optimizer has "
                         f"{len(order)}; resume with the same model and `configure_optimizers`.")
    name_of = dict(zip(saved, order))
    return {"state": {name_of[i]: value for i, value in state["state"].items()},
            "param_groups": [{**group, "params": [name_of[i] for i in group["params"]]}
                             for group in state["param_groups"]]}


def _is_sharded_state(state: Any) -> bool:
    from torch.distributed.tensor import DTensor

    if isinstance(state, DTensor):
        return True
    if isinstance(state, dict):
        return any(_is_sharded_state(value) for value in state.values())
    return False


def load_model_state(module: nn.Module, state: dict[str, Any], strict: bool) -> None:
    """Load a full state dict (every rank holds it) or this rank's shards into the sharded module."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    full = not _is_sharded_state(state)
    set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=full, strict=strict))


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a plain (index-keyed, e.g. from a single-process run), full name-keyed or sharded optimizer state."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    optimizer = getattr(optimizer, "_optimizer", optimizer)
    if all(isinstance(i, int) for group in state.get("param_groups", []) for i in group["params"]):
        state = _keyed_by_name(module, optimizer, state)
    full = not _is_sharded_state(state["state"])
    set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=full))


# -- files and directories --------------------------------------------------------------------------------


def is_sharded_checkpoint(path: Any) -> bool:
    """Whether `path` is a directory written by `save_sharded` (DCP metadata and `meta.pt`)."""
    path = Path(path)
    return path.is_dir() and (path / METADATA_FILE).is_file() and (path / ".metadata").is_file()


def prepare_full_target(path: str) -> None:
    """A full checkpoint replaces a sharded one of the same name; any other directory there is an error."""
    if is_sharded_checkpoint(path):
        shutil.rmtree(path)
    elif os.path.isdir(path):
        raise IsADirectoryError(f"Cannot write the checkpoint file {path}: a directory of that name exists.")


def save_sharded(checkpoint: dict[str, Any], path: str, strategy: Any) -> None:
    """Every rank writes its shards into a temporary sibling directory; once all are written, rank 0 adds
    `meta.pt` and renames it to `path` (a save that fails half-way leaves the previous checkpoint)."""
    import torch.distributed.checkpoint as dcp

    token = strategy.broadcast(uuid.uuid4().hex[:12] if strategy.is_global_zero else None)
    target = Path(path)
    staging = target.with_name(f".{target.name}.tmp-{token}")
    state = {"model": checkpoint["state_dict"]}
    state.update({f"optimizer_{i}": s for i, s in enumerate(checkpoint.get("optimizer_states", []))})
    metadata = {key: value for key, value in checkpoint.items() if key not in ("state_dict", "optimizer_states")}
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        dcp.save(state, checkpoint_id=staging)  # collective: returns once every rank's shard is written
        if strategy.is_global_zero:
            torch.save(metadata, staging / METADATA_FILE)
            _replace_directory(staging, target, token)
    except CheckpointException as error:  # a BaseException in torch: give callers an ordinary error
        if strategy.is_global_zero:
            shutil.rmtree(staging, ignore_errors=True)
        failures = "; ".join(f"rank {rank}: {type(e).__name__}: {e}" for rank, (e, _) in error.failures.items())
        kept = "the previous checkpoint there is kept" if target.exists() else "nothing was written there"
        raise RuntimeError(f"Saving the sharded checkpoint {path} failed ({failures}); {kept}.") from None
    except BaseException:
        if strategy.is_global_zero:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_directory(staging: Path, target: Path, token: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.rename(staging, target)
        return
    previous = target.with_name(f".{target.name}.old-{token}")
    os.rename(target, previous)  # a directory cannot be replaced in one rename: move the old one aside first
    os.rename(staging, target)
    remove_directory(previous) if previous.is_dir() else previous.unlink()


def remove_directory(path: Any) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _saved_optimizer_count(path: Any) -> int:
    from torch.distributed.checkpoint import FileSystemReader

    keys = FileSystemReader(path).read_metadata().state_dict_metadata
    return len({key.split(".", 1)[0] for key in keys if key.startswith("optimizer_")})


def load_sharded(path: str, module: nn.Module, optimizers: list[torch.optim.Optimizer],
                 weights_only: bool | None) -> dict[str, Any]:
    """Read a sharded checkpoint into templates of this run's shards (DCP reshards to this world size); the
    returned checkpoint holds them under `state_dict` and `optimizer_states`."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    # The safe loader unless told otherwise, as for checkpoint files.
    checkpoint = torch.load(Path(path) / METADATA_FILE, map_location="cpu",
                            weights_only=weights_only is None or weights_only)
    state: dict[str, Any] = {"model": get_model_state_dict(module)}
    if optimizers:
        saved = _saved_optimizer_count(path)
        if saved != len(optimizers):
            raise RuntimeError(f"The run has {len(optimizers)} optimizer(s) but the checkpoint {path} holds "
                               f"{saved}; resume with the same `configure_optimizers`.")
        for i, optimizer in enumerate(optimizers):
            state[f"optimizer_{i}"] = get_optimizer_state_dict(module, getattr(optimizer, "_optimizer", optimizer))
    dcp.load(state, checkpoint_id=path)
    checkpoint["state_dict"] = state["model"]
    checkpoint["optimizer_states"] = [state[f"optimizer_{i}"] for i in range(len(optimizers))]
    return checkpoint


def convert_sharded_checkpoint(directory: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write the sharded checkpoint `directory` as one Lightning-layout file `output` (no process group needed;
    the whole model must fit in this process's memory)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from fulmen.checkpoint_io import TorchCheckpointIO

    if not is_sharded_checkpoint(directory):
        raise ValueError(f"{os.fspath(directory)!r} is not a sharded checkpoint directory (it needs `.metadata` and "
                         f"`{METADATA_FILE}`, as `FSDPStrategy(state_dict_type='sharded')` writes).")
    with tempfile.TemporaryDirectory() as scratch:
        consolidated = Path(scratch) / "full.pt"
        dcp_to_torch_save(directory, consolidated)
        state = torch.load(consolidated, weights_only=False)
    checkpoint = torch.load(Path(directory) / METADATA_FILE, weights_only=False)
    checkpoint["state_dict"] = state["model"]
    count = len([key for key in state if key.startswith("optimizer_")])
    checkpoint["optimizer_states"] = [keyed_by_index(state[f"optimizer_{i}"]) for i in range(count)]
    TorchCheckpointIO().save_checkpoint(checkpoint, output)
    return Path(output)
