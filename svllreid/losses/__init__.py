"""Training losses as pure functions over tensors: no models, data or configs here."""

from svllreid.losses.cross_entropy import cross_entropy_label_smooth
from svllreid.losses.ntxent import nt_xent_loss
from svllreid.losses.supcon import supcon_loss
from svllreid.losses.triplet import triplet_loss

__all__ = ["cross_entropy_label_smooth", "nt_xent_loss", "supcon_loss", "triplet_loss"]
