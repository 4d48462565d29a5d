"""Deprecated: moved to svllreid.export.exporter (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.export.exporter")
