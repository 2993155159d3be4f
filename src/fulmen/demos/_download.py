"""Fetching a demo's data file over HTTP(S), atomically, with an offline error that says where to put it."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request


def download_file(url: str, destination: str | os.PathLike, option_hint: str) -> None:
    """Fetch `url` into `destination` (written to a temp file, then renamed, so a failed download leaves no
    partial file behind). Offline or on an HTTP error, raise a RuntimeError naming the URL and how to
    provide the file by hand (`option_hint` names the argument that points at the local folder)."""
    destination = os.fspath(destination)
    folder = os.path.dirname(destination) or "."
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=folder, prefix=".download-")
    try:
        with os.fdopen(handle, "wb") as file:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (fixed https URLs)
                while chunk := response.read(1 << 20):
                    file.write(chunk)
        os.replace(partial, destination)
    except (urllib.error.URLError, OSError) as error:
        raise RuntimeError(
            f"Could not download {url} ({error}). If this machine is offline, download that file elsewhere and "
            f"place it at {os.path.abspath(destination)} ({option_hint}); it is then used without downloading."
        ) from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)
