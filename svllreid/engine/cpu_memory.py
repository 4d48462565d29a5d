"""Deprecated: moved to svllreid.training.cpu_memory (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.training.cpu_memory")
