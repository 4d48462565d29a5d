"""Deprecated: moved to svllreid.training.tasks (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.training.tasks")
