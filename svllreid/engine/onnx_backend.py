"""Deprecated: moved to svllreid.inference.onnx_backend (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.inference.onnx_backend")
