"""Port one Python file: find its real Lightning imports and dotted uses with `ast`, rewrite them to fulmen as text
edits (so formatting and comments stay), and report names fulmen does not have.

Owns: import bindings, name resolution and the rewrite. Does not own: the checks of calls, classes and hooks
(`port_checks`), nor files and output (`port`).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from fulmen.debug.port_rules import MISSING, Finding, classify, explain_missing, lookup, module_exists

_GAP = r"(?:\s|\\\n)*"


def _dotted_pattern(dotted: str) -> str:
    return f"{_GAP}\\.{_GAP}".join(re.escape(part) for part in dotted.split("."))


class PythonFile:
    """One parsed source file: its text, Lightning bindings, pending edits and findings."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text
        self.tree = ast.parse(text, filename=path)
        # Lines as `ast` counts them (str.splitlines would also split at form feeds and other separators).
        self.lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text) or [""]
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.findings: list[Finding] = []
        self.edits: list[tuple[int, int, str]] = []
        # name -> the Lightning dotted path it is bound to (`pl` -> "pytorch_lightning", `Trainer` -> "...Trainer").
        self.bindings: dict[str, str] = {}
        self.unaliased: set[str] = set()  # root names bound by `import lightning.x` without `as`
        self.umbrella: set[str] = set()  # names bound by `import lightning [as L]` itself
        self.fulmen_bound = False  # whether `fulmen` is a bound name after the port
        self._collect_bindings()

    # Positions: ast columns count UTF-8 bytes; edits and reports count characters.
    def offset(self, line: int, byte_col: int) -> int:
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return self.line_starts[line - 1] + len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def span(self, node: Any) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def add(self, node: Any, tag: str, message: str) -> None:
        column = self.offset(node.lineno, node.col_offset) - self.line_starts[node.lineno - 1] + 1
        self.findings.append(Finding(self.path, node.lineno, column, tag, message))

    def edit(self, start: int, end: int, replacement: str) -> None:
        self.edits.append((start, end, replacement))

    def ported_text(self) -> str:
        text, last = self.text, len(self.text) + 1
        for start, end, replacement in sorted(self.edits, reverse=True):
            if end <= last:  # overlapping edits cannot happen by construction; keep the first if they do
                text, last = text[:start] + replacement + text[end:], start
        return text

    def resolve(self, node: Any) -> tuple[str, list[Any]] | None:
        """For a `Name` or `a.b.c` chain bound to Lightning: (its Lightning dotted path, the chain's nodes)."""
        nodes = []
        while isinstance(node, ast.Attribute):
            nodes.append(node)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.bindings:
            return None
        nodes.append(node)
        nodes.reverse()
        return ".".join([self.bindings[node.id], *(n.attr for n in nodes[1:])]), nodes

    def resolve_object(self, node: Any) -> Any:
        """The fulmen object a Lightning chain maps to; MISSING if fulmen lacks it, None when not Lightning."""
        resolved = self.resolve(node)
        kind = classify(resolved[0]) if resolved else None
        return lookup(kind[1]) if kind and kind[0] == "pytorch" else None

    def _collect_bindings(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "fulmen" or alias.name.startswith("fulmen."):
                        self.fulmen_bound |= alias.asname is None
                    elif classify(alias.name) is not None:
                        if alias.name == "lightning":
                            self.umbrella.add(alias.asname or "lightning")
                        if alias.asname:
                            self.bindings[alias.asname] = alias.name
                        else:
                            root = alias.name.split(".")[0]
                            self.bindings[root] = root
                            self.unaliased.add(root)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module and classify(node.module):
                for alias in node.names:
                    if alias.name != "*":
                        self.bindings[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _uses(self) -> list[tuple[str, list[Any]]]:
        """Every outermost Lightning chain (`pl.callbacks.X`, not also `pl.callbacks`) read in the file."""
        inner = {id(node.value) for node in ast.walk(self.tree) if isinstance(node, ast.Attribute)}
        uses = []
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Attribute, ast.Name)) and id(node) not in inner:
                resolved = self.resolve(node)
                if resolved is not None and not isinstance(getattr(resolved[1][0], "ctx", None), ast.Store):
                    uses.append(resolved)
        return uses

    def port(self) -> None:
        """Record the rewrite edits and the findings about missing names."""
        uses = self._uses()
        # An umbrella `import lightning [as L]` also used for Fabric keeps `lightning` bound next to fulmen.
        keeps_lightning = {nodes[0].id for dotted, nodes in uses
                           if nodes[0].id in self.umbrella and classify(dotted)[0] != "pytorch"}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                self._port_import(node, keeps_lightning)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module and classify(node.module):
                self._port_import_from(node)
        for dotted, nodes in uses:
            self._port_use(dotted, nodes, keeps_lightning)

    def _port_import(self, node: ast.Import, keeps_lightning: set[str]) -> None:
        for alias in node.names:
            kind = classify(alias.name)
            if kind is None:
                continue
            if kind[0] != "pytorch" or not module_exists(kind[1]):
                self.add(alias, *explain_missing(alias.name, kind[1]))
                continue
            new = "fulmen" + (f".{kind[1]}" if kind[1] else "")
            start, end = self.span(alias)
            match = re.match(_dotted_pattern(alias.name), self.text[start:end])
            if match is None:
                continue
            self.edit(start, start + match.end(), new)
            if alias.asname is None:
                self.fulmen_bound = True
            if alias.name == "lightning" and (alias.asname or "lightning") in keeps_lightning:
                self.edit(end, end, ", lightning")

    def _port_import_from(self, node: ast.ImportFrom) -> None:
        module = node.module
        kind, rest = classify(module)
        if kind != "pytorch" or not module_exists(rest):
            names = [alias for alias in node.names if alias.name != "*"] if kind == "pytorch" else []
            for alias in names:  # each name may live elsewhere in fulmen
                self.add(alias, *explain_missing(f"{module}.{alias.name}", f"{rest}.{alias.name}"))
            if not names:
                self.add(node, *explain_missing(module, rest))
            return
        new_module = "fulmen" + (f".{rest}" if rest else "")
        ported, kept, as_modules = [], [], []
        for alias in node.names:
            written = alias.name + (f" as {alias.asname}" if alias.asname else "")
            full = f"{module}.{alias.name}"
            if module == "lightning" and alias.name == "pytorch":
                as_modules.append(f"import fulmen as {alias.asname or 'pytorch'}")
            elif alias.name == "*" or (classify(full)[0] == "pytorch" and lookup(classify(full)[1]) is not MISSING):
                ported.append(written)
            else:
                kept.append(written)
                self.add(alias, *explain_missing(full, classify(full)[1]))
        start, end = self.span(node)
        if not kept and not as_modules:
            match = re.match(f"from{_GAP}({_dotted_pattern(module)})", self.text[start:end])
            if match is not None:
                self.edit(start + match.start(1), start + match.end(1), new_module)
            return
        statements = as_modules + ([f"from {new_module} import {', '.join(ported)}"] if ported else [])
        statements += [f"from {module} import {', '.join(kept)}"] if kept else []
        line_start = self.line_starts[node.lineno - 1]
        before = self.text[line_start:start]
        first_line = self.lines[node.lineno - 1]
        newline = first_line[len(first_line.rstrip("\r\n")):] or "\n"
        separator = newline + before if before.strip() == "" else "; "
        self.edit(start, end, separator.join(statements))

    def _port_use(self, dotted: str, nodes: list[Any], keeps_lightning: set[str]) -> None:
        name = nodes[0].id
        bound_to = self.bindings[name]
        kind, rest = classify(dotted)
        if kind != "pytorch":
            if name in keeps_lightning:
                self.add(nodes[0], *explain_missing(dotted, rest))
                if name != "lightning":  # `L` now names fulmen; Fabric stays reachable as `lightning`
                    self.edit(*self.span(nodes[0]), "lightning")
            return
        self._check_exists(dotted, nodes)
        if bound_to == "lightning":
            pytorch_part = len(nodes) > 1 and nodes[1].attr == "pytorch"
            if name not in self.unaliased:  # `import lightning as L`: `L.pytorch.X` -> `L.X`
                if pytorch_part:
                    self.edit(*self.span(nodes[1]), name)
            elif self.fulmen_bound:  # `lightning.pytorch.X` / `lightning.Trainer` -> `fulmen.X`
                self.edit(*self.span(nodes[1] if pytorch_part else nodes[0]), "fulmen")
        elif bound_to == "pytorch_lightning" and name in self.unaliased and self.fulmen_bound:
            self.edit(*self.span(nodes[0]), "fulmen")

    def _check_exists(self, dotted: str, nodes: list[Any]) -> None:
        parts = dotted.split(".")
        extra = len(parts) - len(nodes)  # parts of the bound path before the chain's own attributes
        for index in range(1, len(nodes)):
            prefix = ".".join(parts[:extra + index + 1])
            kind, rest = classify(prefix)
            if kind == "pytorch" and lookup(rest) is MISSING:
                self.add(nodes[index], *explain_missing(prefix, rest))
                return
