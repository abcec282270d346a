"""``python -m gpuzarr``: the ``gpuzarr`` command, where the script is not installed."""

from gpuzarr.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
