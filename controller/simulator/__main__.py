"""``python -m controller.simulator``."""

import sys

from controller.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m controller.simulator"))
