"""Deprecated: moved to svllreid.distributed (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.distributed")
