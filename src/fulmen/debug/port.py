"""`python -m fulmen port PATH...`: move a Lightning project to fulmen. Rewrites the `lightning.pytorch` /
`pytorch_lightning` / `lightning` imports and uses (and LightningCLI YAML class paths), prints a unified diff (or
writes with `--write`), and lists every use fulmen does not support or runs differently, like a linter.

Owns: finding the files, the diff, atomic writes, the report and the exit status. Exit status: 0 nothing to change
or report; 1 changes to make (dry run) or findings left; 2 an error (bad path, a file that does not parse).
"""

from __future__ import annotations

import difflib
import io
import os
import sys
import tempfile
import tokenize
from typing import TextIO

from fulmen.debug.port_rules import Finding

_SKIPPED_DIRECTORIES = {"__pycache__", "node_modules", "site-packages"}
_SUFFIXES = (".py", ".yaml", ".yml")


def run_port(paths: list[str], write: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Port the Python files and YAML configs at `paths` (files or directories); return the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    files, problems = _discover(paths)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=err)
        return 2
    from fulmen.debug.port_checks import check_file, lightning_classes
    from fulmen.debug.port_python import PythonFile
    from fulmen.debug.port_yaml import port_yaml

    findings: list[Finding] = []
    sources: dict[str, tuple[str, str]] = {}  # path -> (text, encoding)
    parsed: list[PythonFile] = []
    for path in files:
        try:
            text, encoding = _read(path)
        except (OSError, UnicodeDecodeError, SyntaxError) as error:
            findings.append(Finding(path, 1, 1, "error", f"cannot read the file: {error}"))
            continue
        sources[path] = (text, encoding)
        if path.endswith(".py"):
            try:
                parsed.append(PythonFile(path, text))
            except SyntaxError as error:
                findings.append(Finding(path, error.lineno or 1, error.offset or 1, "error",
                                        f"cannot parse the file: {error.msg}"))
    ported: dict[str, str] = {}
    classes = lightning_classes(parsed)
    for file in parsed:
        file.port()
        check_file(file, classes)
        findings += file.findings
        ported[file.path] = file.ported_text()
    for path in files:
        if path.endswith((".yaml", ".yml")) and path in sources and _mentions_lightning(sources[path][0]):
            ported[path], yaml_findings = port_yaml(path, sources[path][0])
            findings += yaml_findings
    changed = [path for path in files if path in ported and ported[path] != sources[path][0]]
    for path in changed:
        if write:
            try:
                _write_atomically(path, ported[path], sources[path][1])
            except OSError as error:
                findings.append(Finding(path, 1, 1, "error", f"cannot write the file: {error}"))
                continue
            print(f"ported {path}", file=out)
        else:
            out.writelines(_diff(path, sources[path][0], ported[path]))
    for finding in sorted(set(findings), key=lambda f: (f.path, f.line, f.col, f.message)):
        print(finding, file=out)
    errors = sum(finding.tag == "error" for finding in findings)
    notes = len(findings) - errors
    action = "ported" if write else "to port (run with --write to apply)"
    print(f"checked {_count(len(files), 'file')}: {len(changed)} {action}, {_count(notes, 'finding')}, "
          f"{_count(errors, 'error')}", file=out)
    if errors:
        return 2
    return 1 if notes or (changed and not write) else 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _discover(paths: list[str]) -> tuple[list[str], list[str]]:
    files: list[str] = []
    problems = []
    for path in paths:
        if os.path.isdir(path):
            for directory, subdirectories, names in os.walk(path):
                subdirectories[:] = sorted(name for name in subdirectories if not name.startswith(".")
                                           and name not in _SKIPPED_DIRECTORIES
                                           and not os.path.exists(os.path.join(directory, name, "pyvenv.cfg")))
                files += [os.path.join(directory, name) for name in sorted(names) if name.endswith(_SUFFIXES)]
        elif os.path.isfile(path):
            if path.endswith(_SUFFIXES):
                files.append(path)
            else:
                problems.append(f"{path}: not a Python file or a YAML config (expected .py, .yaml or .yml)")
        else:
            problems.append(f"{path}: no such file or directory")
    return list(dict.fromkeys(files)), problems


def _read(path: str) -> tuple[str, str]:
    with open(path, "rb") as handle:
        data = handle.read()
    # "utf-8-sig" for a file with a byte-order mark: decoding drops it and writing puts it back.
    encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0] if path.endswith(".py") else "utf-8-sig"
    return data.decode(encoding), encoding


def _mentions_lightning(text: str) -> bool:
    return "lightning" in text or "trainer:" in text


def _diff(path: str, before: str, after: str) -> list[str]:
    def lines(text: str) -> list[str]:
        split = text.splitlines(keepends=True)
        if split and not split[-1].endswith(("\n", "\r")):
            split[-1] += "\n\\ No newline at end of file\n"
        return split

    return list(difflib.unified_diff(lines(before), lines(after), fromfile=path, tofile=path))


def _write_atomically(path: str, text: str, encoding: str) -> None:
    """Write to a temporary file next to `path`, then rename it over: an interrupted write leaves the old file."""
    path = os.path.realpath(path)  # through a symbolic link, rewrite its target rather than replace the link
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".fulmen-port-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(text.encode(encoding))
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, os.stat(path).st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
