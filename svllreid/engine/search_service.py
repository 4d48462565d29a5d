"""Deprecated: moved to svllreid.serve.search_service (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.serve.search_service")
