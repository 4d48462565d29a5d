"""Deprecated: moved to svllreid.evaluation.text_eval and svllreid.inference.text_encoding (see svllreid._moved)."""

from svllreid._moved import merge

merge(__name__, "svllreid.evaluation.text_eval", "svllreid.inference.text_encoding")
