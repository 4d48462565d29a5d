"""Deprecated: moved to svllreid.pretraining.pretrain (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.pretraining.pretrain")
