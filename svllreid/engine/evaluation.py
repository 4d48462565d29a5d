"""Deprecated: moved to svllreid.evaluation.checkpoint_eval (see svllreid._moved)."""

from svllreid._moved import alias

alias(__name__, "svllreid.evaluation.checkpoint_eval")
