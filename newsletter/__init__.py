"""newsletter: a self-hosted newsletter and content-series scheduler."""

__version__ = "0.1.0"
