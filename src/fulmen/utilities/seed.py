"""Seed every random number generator a training run touches, including dataloader workers."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import torch

from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

_MAX_SEED = 2**32 - 1


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed Python's `random`, NumPy and torch (CPU and CUDA); return the seed used.

    With `seed=None` the `PL_GLOBAL_SEED` environment variable is used, else 0. With `workers=True`,
    dataloader workers are reseeded deterministically from the seed, worker id and rank.
    """
    if seed is None:
        env_seed = os.environ.get("PL_GLOBAL_SEED")
        seed = int(env_seed) if env_seed is not None else 0
        if env_seed is None:
            rank_zero_warn(f"No seed given; seed_everything uses {seed}.")
    if not isinstance(seed, int):
        seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        rank_zero_warn(f"seed={seed} is outside [0, {_MAX_SEED}]; using 0 instead.")
        seed = 0
    if verbose:
        rank_zero_info(f"Seed set to {seed}")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def worker_init_function(worker_id: int, rank: int | None = None) -> None:
    """Seed `random`, NumPy and torch in a dataloader worker from the global seed, worker id and rank."""
    global_rank = rank if rank is not None else int(os.environ.get("RANK", 0))
    base_seed = torch.initial_seed() - worker_id
    sequence = _seed_sequence(base_seed, worker_id, global_rank)
    torch.manual_seed(sequence[0])
    random.seed(sequence[1])
    try:
        import numpy

        numpy.random.seed(sequence[2] % 2**32)
    except ImportError:
        pass


def _seed_sequence(base_seed: int, worker_id: int, rank: int) -> list[int]:
    # Mix the three numbers through a seeded generator so neighbouring workers get unrelated streams.
    generator = random.Random((base_seed * 1_000_003 + worker_id * 10_007 + rank) % 2**63)
    return [generator.getrandbits(63) for _ in range(3)]


def reset_seed() -> None:
    """Re-apply the seed from the last `seed_everything` call, if there was one."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None:
        seed_everything(int(seed), workers=bool(int(os.environ.get("PL_SEED_WORKERS", "0"))), verbose=False)


def capture_rng_states(generators: list[torch.Generator] = (), include_cuda: bool = True) -> dict[str, Any]:
    """Snapshot every random number generator a run draws from, as values a safe checkpoint can hold.

    CUDA's generators are included only when `include_cuda` and CUDA is already initialized (never initializing it).
    """
    # Integer arrays are kept as tensors: a checkpoint pickles thousands of Python ints far more slowly.
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "python": (version, torch.tensor(internal, dtype=torch.int64), gauss)}
    try:
        import numpy

        name, keys, position, has_gauss, cached = numpy.random.get_state()
        states["numpy"] = (name, torch.from_numpy(keys.astype(numpy.int64)), position, has_gauss, cached)
    except ImportError:
        pass
    if include_cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    states["generators"] = [generator.get_state() for generator in generators]
    return states


def restore_rng_states(states: dict[str, Any], generators: list[torch.Generator] = ()) -> None:
    """Put back what `capture_rng_states` saved (generators in the same order)."""
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(int(value) for value in internal.tolist()), gauss))
    if "numpy" in states:
        import numpy

        name, keys, position, has_gauss, cached = states["numpy"]
        numpy.random.set_state((name, keys.numpy().astype(numpy.uint32), position, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for generator, state in zip(generators, states.get("generators", [])):
        generator.set_state(state)


@contextlib.contextmanager
def isolate_rng(include_cuda: bool = True) -> Iterator[None]:
    """Run a block without disturbing the global random streams (torch, Python, NumPy, and CUDA's unless
    `include_cuda=False`, which leaves CUDA untouched, e.g. in a forked process that must not use it)."""
    states = capture_rng_states(include_cuda=include_cuda)
    try:
        yield
    finally:
        restore_rng_states(states)
