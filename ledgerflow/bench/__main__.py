"""``python -m ledgerflow.bench [--quick] [--runs N] [--events N] [--out DIR]``: the same as
``ledgerflow bench`` (see ledgerflow/bench/run.py), for environments without the CLI entry point."""

from __future__ import annotations

import argparse
import sys

from ledgerflow.bench.run import bench_cli
from ledgerflow.config import load_settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ledgerflow.bench",
        description="measure ledgerflow against the raw limits of the same stack",
    )
    p.add_argument("--quick", action="store_true", help="seconds-long smoke with tiny sizes (writes quick.*)")
    p.add_argument(
        "--runs", type=int, default=3, help="rounds; every figure is a median over them (default 3)"
    )
    p.add_argument(
        "--events", type=int, default=0, help="saturation backlog per trial (default 20000; quick 300)"
    )
    p.add_argument("--out", default="bench/results", help="where results go (default bench/results)")
    args = p.parse_args(argv)
    return bench_cli(load_settings(), quick=args.quick, runs=args.runs, events=args.events, out_dir=args.out)


if __name__ == "__main__":
    sys.exit(main())
