"""Print the metrics table `validate` and `test` show at the end."""

from __future__ import annotations

import shutil


def print_results(results: list[dict[str, float]], stage: str) -> None:
    """Print one column per dataloader and one row per metric (sorted by name)."""
    if not results or not any(results):
        return
    title = "Validate metric" if stage == "validate" else "Test metric"
    names = sorted({name for dataloader in results for name in dataloader})
    headers = [title] + [f"DataLoader {idx}" for idx in range(len(results))]
    rows = [[name] + [_format(dataloader.get(name)) for dataloader in results] for name in names]
    widths = [max(len(headers[col]), *(len(row[col]) for row in rows)) + 8 for col in range(len(headers))]
    rule = "─" * min(max(sum(widths), 40), shutil.get_terminal_size((120, 20)).columns)
    lines = [rule, "".join(text.center(width) for text, width in zip(headers, widths)), rule]
    lines += ["".join(text.center(width) for text, width in zip(row, widths)) for row in rows]
    lines.append(rule)
    print("\n".join(lines))


def _format(value: float | None) -> str:
    return "" if value is None else f"{value}"
