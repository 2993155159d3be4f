"""The run-fingerprint file: `fingerprints.bin` in the run directory (rank r > 0 writes `fingerprints.rank{r}.bin`).

Binary, so that writing it costs next to nothing per step: a sequence of blocks, each a 4-byte tag, the payload's
length (uint32, little-endian) and the payload.

- `META`: UTF-8 JSON opening a recording session (one per `fit`): `event` ("start", or "resume" when the fit
  continues from a checkpoint or an earlier fit), `step`/`epoch` it starts at, `checkpoint`, `rank`, `world_size`,
  `torch` version, `columns`, `sample_every` (how often the Python/NumPy RNGs are sampled).
- `ROWS`: uint32 row count N, then one array of N little-endian 8-byte values per column, in `COLUMNS` order:
  float64 for `loss` and `grad_norm`, int64 for the others.

A resumed session appends to the file; its rows replace the earlier session's rows from its first step on. A block
cut short (the process died while writing it) is ignored when reading.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, BinaryIO

FORMAT, VERSION = "fulmen-fingerprints", 1
COLUMNS = ("step", "epoch", "batch_idx", "optimizer", "loss", "grad_norm",
           "rng_torch", "rng_cuda", "rng_python", "rng_numpy")
FLOAT_COLUMNS = frozenset(("loss", "grad_norm"))
# What can diverge between two runs, in the order a report lists it.
COMPONENTS = ("loss", "grad_norm", "rng_torch", "rng_cuda", "rng_python", "rng_numpy")
# Sampled every `sample_every` steps only (0 in the rows between): reading these RNGs costs tens of microseconds.
SAMPLED = frozenset(("rng_python", "rng_numpy"))
_HEADER = struct.Struct("<4sI")
_SWAP = sys.byteorder == "big"


def file_name(rank: int) -> str:
    """The fingerprint file of global rank `rank` inside a run directory."""
    return "fingerprints.bin" if rank == 0 else f"fingerprints.rank{rank}.bin"


class FingerprintWriter:
    """Appends sessions and row blocks to a fingerprint file (truncating it first unless `append`)."""

    def __init__(self, path: str, append: bool) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.path = path
        self._file: BinaryIO = open(path, "ab" if append else "wb")  # noqa: SIM115 - open for the whole fit

    def _block(self, tag: bytes, payload: bytes) -> None:
        self._file.write(_HEADER.pack(tag, len(payload)) + payload)
        self._file.flush()  # what was written survives a crash of the run

    def write_meta(self, meta: dict[str, Any]) -> None:
        self._block(b"META", json.dumps({"format": FORMAT, "version": VERSION, "columns": list(COLUMNS), **meta})
                    .encode())

    def write_rows(self, columns: dict[str, list]) -> None:
        """Write one block of rows given as one list per column (all of the same length)."""
        count = len(columns["step"])
        parts = [struct.pack("<I", count)]
        for name in COLUMNS:
            values = array("d" if name in FLOAT_COLUMNS else "q", columns[name])
            if _SWAP:
                values.byteswap()
            parts.append(values.tobytes())
        self._block(b"ROWS", b"".join(parts))

    def close(self) -> None:
        self._file.close()


@dataclass
class Fingerprints:
    """A fingerprint file as read: its sessions and its rows (later sessions replacing what they re-recorded).

    Attributes:
        path: the file.
        sessions: the `META` dicts, in order (each also gets `superseded`: how many earlier rows it replaced).
        rows: one dict per recorded optimizer step, keys `COLUMNS`.
        truncated: whether the file ended inside a block (the run died while writing it).
    """

    path: str
    sessions: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    @property
    def rank(self) -> int:
        return int(self.sessions[0].get("rank", 0)) if self.sessions else 0


def read_fingerprints(path: str | os.PathLike) -> Fingerprints:
    """Read the fingerprint file at `path` (see this module's docstring for the format)."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        data = handle.read()
    result = Fingerprints(path)
    offset, columns = 0, list(COLUMNS)
    while offset < len(data):
        if offset + _HEADER.size > len(data):
            result.truncated = True
            break
        tag, length = _HEADER.unpack_from(data, offset)
        start, offset = offset + _HEADER.size, offset + _HEADER.size + length
        if offset > len(data):
            result.truncated = True
            break
        payload = data[start:offset]
        if tag == b"META":
            meta = json.loads(payload.decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path} is not a fulmen fingerprint file (format {meta.get('format')!r}).")
            columns = meta.get("columns", columns)
            _start_session(result, meta)
        elif tag == b"ROWS":
            result.rows.extend(_decode_rows(payload, columns))
        else:
            raise ValueError(f"{path} is not a fulmen fingerprint file, or is damaged (unknown block {tag!r} at "
                             f"byte {start - _HEADER.size}).")
    if not result.sessions and data:
        raise ValueError(f"{path} is not a fulmen fingerprint file (no session header).")
    return result


def _start_session(result: Fingerprints, meta: dict[str, Any]) -> None:
    # A session resumed from an earlier step re-records the steps from there on: its rows replace the old ones.
    step = int(meta.get("step", 0))
    keep = len(result.rows)
    while keep and result.rows[keep - 1]["step"] >= step:
        keep -= 1
    meta["superseded"] = len(result.rows) - keep
    del result.rows[keep:]
    result.sessions.append(meta)


def _decode_rows(payload: bytes, columns: list[str]) -> list[dict[str, Any]]:
    (count,) = struct.unpack_from("<I", payload)
    values: dict[str, array] = {}
    offset = 4
    for name in columns:
        column = array("d" if name in FLOAT_COLUMNS else "q")
        column.frombytes(payload[offset:offset + 8 * count])
        if _SWAP:
            column.byteswap()
        values[name] = column
        offset += 8 * count
    names = [name for name in COLUMNS if name in values]
    return [{name: values[name][index] for name in names} for index in range(count)]
