"""Deprecated: moved to svllreid.inference.image_branch (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.inference.image_branch")
