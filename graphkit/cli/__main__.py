"""``python -m graphkit.cli``: the same command line as ``graphkit``."""

from graphkit.cli import main

main(prog_name="graphkit")
