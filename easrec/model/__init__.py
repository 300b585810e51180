"""Models: SASRec (elastic by construction) and the weight-sharing supernet over it."""

from easrec.model.sasrec import NEG, SASRec, SoftChoice
from easrec.model.supernet import Supernet

__all__ = ["NEG", "SASRec", "SoftChoice", "Supernet"]
