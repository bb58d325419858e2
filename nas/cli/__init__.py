"""The `hwnas` command line."""
