"""Version of this package (each ALP package is versioned on its own)."""

__version__ = "0.1.0"
