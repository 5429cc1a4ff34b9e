"""ccli: contrastive deep image clustering from the command line."""

__version__ = "0.1.0"
