"""svllreid: SVLL-ReID and CLIP-ReID image re-identification on open_clip."""

__version__ = "0.1.0"
