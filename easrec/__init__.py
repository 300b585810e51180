"""easrec: device-aware elastic architecture search for sequential recommenders."""

import logging

__version__ = "0.1.0"


class _KnownNoise(logging.Filter):
    """Drops two harmless warnings every CPU-only process would otherwise print on each export.

    torchao logs "Failed to load ..." for its optional CUDA kernels (absent from CPU wheels) and "no triton"
    for GPU kernels easrec never calls, and torch's
    pytree warns that torchao registers an Enum the old way; neither affects what easrec lowers.
    """

    NOISE = ("Failed to load", "is an Enum subclass and is now natively supported", "Detected no triton")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.NOISE)


# Filters do not propagate to child loggers: each logger that emits one of these gets its own.
for _name in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
    logging.getLogger(_name).addFilter(_KnownNoise())
