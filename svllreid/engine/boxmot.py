"""Deprecated: moved to svllreid.export.boxmot (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.export.boxmot")
