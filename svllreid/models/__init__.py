"""ReID networks over open_clip towers: image / text encoders, prompts, heads, factory."""

from svllreid.errors import PretrainedError
from svllreid.models.factory import ModelSpec, create_model
from svllreid.models.reid_model import ReIDModel, ReIDOutput

__all__ = ["ModelSpec", "PretrainedError", "ReIDModel", "ReIDOutput", "create_model"]
