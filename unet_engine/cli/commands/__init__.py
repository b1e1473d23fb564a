"""One module per ``segloop`` subcommand (see :mod:`unet_engine.cli.main`)."""
