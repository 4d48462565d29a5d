"""Deprecated: moved to svllreid.inference.query_encoder (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.inference.query_encoder")
