"""Deprecated: moved to svllreid.inference.checkpoint (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.inference.checkpoint")
