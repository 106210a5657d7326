"""The version of tpv, in the core so that every layer may record it (vector files, run folders, stores)."""

__version__ = "0.1.0"
