"""An example third-party ALP plugin."""

__version__ = "0.1.0"
