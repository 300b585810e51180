"""easrec: device-aware elastic architecture search for sequential recommenders."""

__version__ = "0.1.0"
