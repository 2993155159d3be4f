"""Command line: `python -m fulmen plot RUN_DIR [--out FILE] [--x step|epoch]`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fulmen", description="fulmen command line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    plot = commands.add_parser("plot", help="draw a run's logged metrics as a PNG of curves")
    plot.add_argument("run_dir", help="a run directory, e.g. lightning_logs/version_0")
    plot.add_argument("--out", help="where to write the PNG (default: RUN_DIR/metrics.png)")
    plot.add_argument("--x", choices=("step", "epoch"), default="step", help="x axis")
    args = parser.parse_args(argv)
    from fulmen.plotting import plot_run

    try:
        path, panels = plot_run(args.run_dir, args.out, args.x)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({len(panels)} panels: {', '.join(panels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
