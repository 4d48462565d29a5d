"""Deprecated: moved to svllreid.training.optim (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.training.optim")
