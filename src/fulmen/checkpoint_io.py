"""CheckpointIO: the one place checkpoint bytes hit the disk.

Owns: atomic writes (temporary file in the same directory, then `os.replace`) so a failed or
interrupted save never destroys the previous file, and loading with `torch.load(weights_only=True)`
unless told otherwise. Subclass it to store checkpoints elsewhere.

No fsync per save: it would cost about a millisecond each time, and the rename already guarantees
readers see the old file or the new one. Subclass and override `save_checkpoint` for power-loss durability.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointIO:
    """Save and load checkpoint dicts on the local filesystem."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        """Write `checkpoint` to `path` atomically: readers see the old file or the new one, never half of one.
        `storage_options` are for a subclass that writes elsewhere; this local writer refuses them."""
        _refuse_storage_options(self, storage_options)
        path = Path(local_path(path, "save a checkpoint to"))
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                recorder = _WriteErrorRecorder(file)
                try:
                    torch.save(checkpoint, recorder)
                except RuntimeError as error:
                    # torch's zip writer turns a failed write (disk full, file too large) into an opaque
                    # "enforce fail ... unexpected pos" assert; surface the real OS error with the path instead.
                    if recorder.error is None:
                        raise
                    raise _save_error(recorder.error, path) from error
            os.replace(temporary, path)
        except OSError as error:
            with _ignore_missing():
                os.unlink(temporary)
            if error.filename is None:  # e.g. the final flush on close failed
                raise _save_error(error, path) from error
            raise
        except BaseException:
            with _ignore_missing():
                os.unlink(temporary)
            raise

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Read a checkpoint; only tensors and plain containers unless `weights_only=False` (trusted files only)."""
        from fulmen.core.saving import load_checkpoint_file

        path = local_path(path, "load a checkpoint from")
        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        with _ignore_missing():
            os.remove(path)

    def teardown(self) -> None:
        """Called when the strategy tears down after each run; override to release what the IO holds."""


def _refuse_storage_options(io: CheckpointIO, storage_options: Any) -> None:
    if storage_options is not None:
        raise TypeError(  # Lightning's words, then the fix
            f"`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg is not supported for "
            f"`{type(io).__name__}`. Please implement your custom `CheckpointIO` to define how you'd like to use "
            "`storage_options` (override `save_checkpoint`), or drop the argument."
        )


def local_path(path: str | os.PathLike, action: str, custom_io: bool = True) -> str:
    """`path` as a local path (a `file://` URL's path); a clear error for another URL (fulmen reads and writes local
    files only: it does not depend on fsspec, through which Lightning reaches remote storage)."""
    text = os.fspath(path)
    scheme, separator, rest = text.partition("://")
    if separator and scheme == "file":
        return rest
    if separator and scheme.isidentifier():
        plugin = (", or a custom `CheckpointIO` plugin that implements `save_checkpoint`/`load_checkpoint` for that "
                  "storage") if custom_io else ""
        raise NotImplementedError(
            f"Cannot {action} {text!r}: fulmen reads and writes the local filesystem only (no '{scheme}://' "
            f"storage). Use a local path (a mounted bucket works){plugin}."
        )
    return text


class TorchCheckpointIO(CheckpointIO):
    """Lightning's name for the default CheckpointIO: `torch.save`/`torch.load` on the local filesystem.
    Loading keeps tensors on the CPU unless `map_location` says otherwise (as Lightning's does)."""

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # The default `map_location` leaves every tensor in CPU memory, wherever it was saved from.
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)


class AsyncCheckpointIO(CheckpointIO):
    """Saves checkpoints in a background thread through `checkpoint_io` (a `TorchCheckpointIO` when None), so
    training does not wait for the disk.

    The checkpoint's tensors are copied when `save_checkpoint` is called (training may change them right
    after); saves and removals run one at a time, in the order asked, each save still atomic. A failed save
    raises its error on the next call to `save_checkpoint`, `remove_checkpoint`, `load_checkpoint` or at
    `teardown` (the end of the run, which also waits for pending saves). Loading a file first waits for the
    queued saves; a removal is queued behind them, so replacing the previous top-k file does not wait either.
    """

    def __init__(self, checkpoint_io: CheckpointIO | None = None) -> None:
        if checkpoint_io is not None and not isinstance(checkpoint_io, CheckpointIO):
            raise TypeError(f"`AsyncCheckpointIO(checkpoint_io={checkpoint_io!r})` needs a CheckpointIO instance.")
        self.checkpoint_io = checkpoint_io if checkpoint_io is not None else TorchCheckpointIO()
        self._executor: Any = None
        self._pending: list[Any] = []
        self._error: BaseException | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        from fulmen.utilities.apply_func import apply_to_collection

        self._raise_error()
        if type(self.checkpoint_io).save_checkpoint is CheckpointIO.save_checkpoint:
            _refuse_storage_options(self.checkpoint_io, storage_options)  # now, not later in the background
            local_path(path, "save a checkpoint to")
        snapshot = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.detach().clone())
        self._submit(self.checkpoint_io.save_checkpoint, snapshot, path, storage_options=storage_options)

    def _submit(self, function: Any, *args: Any, **kwargs: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if self._executor is None:  # created lazily: `teardown` ends it after every run
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fulmen-checkpoint")
        self._pending = [future for future in self._pending if not future.done()]
        self._pending.append(self._executor.submit(self._call, function, *args, **kwargs))

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except BaseException as error:  # kept for the training thread, which raises it
            if self._error is None:
                self._error = error

    def wait(self) -> None:
        """Block until every queued save is written; raise the error of a failed one."""
        for future in self._pending:
            future.result()
        self._pending = []
        self._raise_error()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The wrapped IO's `load_checkpoint`, once the queued saves are written."""
        self.wait()
        return self.checkpoint_io.load_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        """The wrapped IO's `remove_checkpoint`, queued to run after the saves asked before it."""
        self._raise_error()
        self._submit(self.checkpoint_io.remove_checkpoint, *args, **kwargs)

    def teardown(self) -> None:
        """Wait for the queued saves, end the thread, and raise the error of a failed save."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._pending = []
        try:
            self._raise_error()
        finally:
            self.checkpoint_io.teardown()


class _WriteErrorRecorder:
    """Passes writes through to `file` and remembers the OS error of a failed one."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self._file.flush()


def _save_error(error: OSError, path: Path) -> OSError:
    reason = error.strerror or str(error)
    return OSError(error.errno, f"{reason} while saving a checkpoint (the previous file at this path, if any, is "
                                f"unchanged; free disk space or save elsewhere)", os.fspath(path))


class _ignore_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        return kind is not None and issubclass(kind, FileNotFoundError)
