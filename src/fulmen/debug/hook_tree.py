"""Render hook-trace records (`HookTracer.records`, `expected_hooks(...)`) as an indented tree.

Nesting: entry point > sanity check / epoch > validation > batch > the calls, each call indented by the
traced calls it runs inside. Consecutive calls of one hook on several owners share a line, and a node
(batch, epoch) whose calls repeat those of the node before it is folded into one "same calls as" line,
so a long run stays readable.
"""

from __future__ import annotations

from typing import Any

# Training hooks that belong to an epoch (others of the train stage belong to the whole fit).
_EPOCH_HOOKS = frozenset({"on_train_epoch_start", "on_train_epoch_end", "on_validation_model_zero_grad"})
_OWNER_COLUMN = 44


def render_tree(records: list[dict[str, Any]]) -> str:
    """The tree of `records` as text (one line per call or node)."""
    runs: list[list[dict[str, Any]]] = []
    for record in records:
        if not runs or runs[-1][0]["run"] != record["run"]:
            runs.append([])
        runs[-1].append(record)
    out: list[str] = []
    for run in runs:
        title = run[0]["fn"] if len(runs) == 1 else f"{run[0]['fn']} (run {run[0]['run']})"
        out.append(str(title))
        _render(_build(run), 1, out)
    return "\n".join(out)


def _path(record: dict[str, Any]) -> tuple[str, ...]:
    """Where a call made outside every other traced call sits in the tree."""
    batch: tuple[str, ...] = ()
    if record["batch_idx"] is not None:
        dataloader = record["dataloader_idx"]
        batch = (f"batch {record['batch_idx']}" + ("" if dataloader is None else f" (dataloader {dataloader})"),)
    stage, hook = record["stage"], record["hook"]
    if stage == "sanity_check":
        return ("sanity check",) + batch
    if record["fn"] != "fit" or (not batch and hook.endswith("_dataloader")):
        return batch
    epoch = f"epoch {record['epoch']}"
    if stage == "validate":
        return (epoch, "validation") + batch
    if batch or hook in _EPOCH_HOOKS:
        return (epoch,) + batch
    return ()


def _build(records: list[dict[str, Any]]) -> list[Any]:
    """Nested items: `["line", depth, hook, owners]` and `["node", label, items]`."""
    root: list[Any] = []
    stack: list[tuple[str, list[Any]]] = []
    path: tuple[str, ...] = ()
    for record in records:
        if record["depth"] == 0:
            path = _path(record)  # nested calls stay with the call they run inside
        common = 0
        while common < len(stack) and common < len(path) and stack[common][0] == path[common]:
            common += 1
        del stack[common:]
        for label in path[common:]:
            node: list[Any] = ["node", label, []]
            (stack[-1][1] if stack else root).append(node)
            stack.append((label, node[2]))
        items = stack[-1][1] if stack else root
        owner = record["owner"]
        if owner.startswith("callback"):
            owner = f"{owner} {record['owner_class']}"
        previous = items[-1] if items else None
        if previous is not None and previous[0] == "line" and previous[1] == record["depth"] \
                and previous[2] == record["hook"]:
            previous[3].append(owner)
        else:
            items.append(["line", record["depth"], record["hook"], [owner]])
    return root


def _render(items: list[Any], indent: int, out: list[str]) -> None:
    folded: list[str] = []
    reference: tuple[str, list[str]] | None = None  # the last node written in full: label and body

    def flush() -> None:
        if folded and reference is not None:
            span = folded[0] if len(folded) == 1 else f"{folded[0]} .. {folded[-1]}"
            out.append(f"{'  ' * indent}{span}: same calls as {reference[0]}")
        folded.clear()

    for item in items:
        if item[0] == "line":
            flush()
            reference = None
            text = f"{'  ' * (indent + item[1])}{item[2]}"
            out.append(f"{text:<{_OWNER_COLUMN}} {', '.join(item[3])}")
            continue
        label, body = item[1], []
        _render(item[2], indent + 1, body)
        kind = label.split(" ")[0]
        if reference is not None and reference[0].split(" ")[0] == kind and reference[1] == body:
            folded.append(label)
            continue
        flush()
        out.append(f"{'  ' * indent}{label}")
        out.extend(body)
        reference = (label, body)
    flush()
