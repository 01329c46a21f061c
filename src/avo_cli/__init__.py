"""avo: turn software-development guidelines into a summary and a checklist."""

__version__ = "0.1.0"
