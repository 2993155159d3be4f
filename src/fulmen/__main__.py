"""Command line: `python -m fulmen plot RUN_DIR [--out FILE] [--x step|epoch]`,
`python -m fulmen convert-checkpoint SHARDED_DIR OUT.ckpt`, `python -m fulmen port PATH... [--write]` and
`python -m fulmen diff RUN_A RUN_B`."""

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
    convert = commands.add_parser("convert-checkpoint",
                                  help="write a sharded (FSDP) checkpoint directory as one checkpoint file")
    convert.add_argument("checkpoint_dir", help="a directory saved with FSDPStrategy(state_dict_type='sharded')")
    convert.add_argument("output", help="the checkpoint file to write, e.g. model.ckpt")
    port = commands.add_parser("port", help="rewrite a Lightning project's imports to fulmen (a diff; --write "
                                            "applies it) and list what fulmen does not support or runs differently")
    port.add_argument("paths", nargs="+", metavar="PATH", help="Python files, YAML configs or directories")
    port.add_argument("--write", action="store_true", help="apply the changes in place (default: print a diff)")
    diff = commands.add_parser("diff", help="the first optimizer step where two runs' fingerprints differ "
                               "(record them with Trainer(fingerprint=True)); exit 0 identical, 1 diverged, 2 error")
    diff.add_argument("run_a", help="a run directory holding fingerprints.bin, or the file itself")
    diff.add_argument("run_b", help="the run to compare with")
    diff.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for loss and grad_norm (default 0)")
    diff.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for loss and grad_norm (default 0)")
    args = parser.parse_args(argv)
    if args.command == "port":
        from fulmen.debug.port import run_port

        return run_port(args.paths, write=args.write)
    if args.command == "diff":
        from fulmen.debug.fingerprint_diff import main as diff_main

        return diff_main(args.run_a, args.run_b, args.rtol, args.atol)
    if args.command == "convert-checkpoint":
        return _convert_checkpoint(args.checkpoint_dir, args.output)
    from fulmen.plotting import plot_run

    try:
        path, panels = plot_run(args.run_dir, args.out, args.x)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({len(panels)} panels: {', '.join(panels)})")
    return 0


def _convert_checkpoint(directory: str, output: str) -> int:
    from fulmen.strategies.fsdp_checkpoint import convert_sharded_checkpoint

    try:
        path = convert_sharded_checkpoint(directory, output)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
