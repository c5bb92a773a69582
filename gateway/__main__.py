"""`python -m gateway` and the `gateway` script: signals first, then the command line."""

import sys

from gateway import signals


def main() -> int:
    if signals.is_run(sys.argv[1:]):
        signals.install()  # before the heavy imports below: see gateway/signals.py
    from gateway.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
