"""`python -m nas.cli` runs the `hwnas` command line."""

from __future__ import annotations

from nas.cli.app import main

main()
