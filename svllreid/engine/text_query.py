"""Deprecated: moved to svllreid.inference.text_query (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.inference.text_query")
