"""``python -m gpuzarr``: the ``gpuzarr`` command, where the script is not installed."""

from gpuzarr.cli import main

raise SystemExit(main())
