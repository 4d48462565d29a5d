"""Deprecated: moved to svllreid.metrics.text_retrieval (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.metrics.text_retrieval")
