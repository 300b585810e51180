"""easrec: device-aware elastic architecture search for sequential recommenders."""

import logging

__version__ = "0.1.0"


class _KnownNoise(logging.Filter):
    """Drops two harmless warnings every CPU-only process would otherwise print on each export.

    torchao logs "Failed to load ..." for its optional CUDA kernels (absent from CPU wheels), and torch's
    pytree warns that torchao registers an Enum the old way; neither affects what easrec lowers.
    """

    NOISE = ("Failed to load", "is an Enum subclass and is now natively supported")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.NOISE)


logging.getLogger("torchao").addFilter(_KnownNoise())
logging.getLogger("torch.utils._pytree").addFilter(_KnownNoise())
