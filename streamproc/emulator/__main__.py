"""``python -m streamproc.emulator [flags]``: the emulator command on its own."""

import argparse
import sys

from streamproc.emulator.command import register

parser = argparse.ArgumentParser(prog="streamproc")
register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(["emulator", *sys.argv[1:]])
sys.exit(args.handler(args))
