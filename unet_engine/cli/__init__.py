"""The headless `segloop` command line."""
