"""Procedural synthetic person re-identification data, written in the Market-1501 layout.

Modules, each using only those before it: :mod:`.attributes` (who a person is), :mod:`.painter` (drawing
a person), :mod:`.scene` (cameras and rendering), :mod:`.captions` (what a view shows, in words) and
:mod:`.writer` (planning, drawing in worker processes, writing files; the entry points below).

:func:`generate_synthetic` draws little pedestrian crops (head, hair, torso with patterned clothing,
arms, legs, shoes, bags) from per-identity attributes that are sampled from small shared palettes, so
that many people share a colour and only the combination of attributes identifies a person. Every
camera has its own viewpoint mix, background, lighting, blur, noise and occlusions. The result is
written as::

    OUT/bounding_box_train/0001_c1s1_000001_00.jpg
    OUT/query/...
    OUT/bounding_box_test/...      (gallery, including pid 0000 distractors)
    OUT/synthetic.json             (generation parameters and per-split counts)

so that a Market-1501 parser reads it unchanged. Only the standard library, numpy and Pillow are used.
Output is deterministic: every image has its own random generator seeded from
``(seed, pid, camera, image)``, so the same arguments give byte-identical files whatever the number of
worker processes.
"""

from svllreid.data.synthesis.attributes import identity_attributes
from svllreid.data.synthesis.writer import (
    CAPTIONS_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    PRETRAIN_WORLD,
    SynthSummary,
    default_train_ids,
    generate_pretraining_world,
    generate_synthetic,
    synthetic_matches,
)

__all__ = [
    "CAPTIONS_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "META_FILE",
    "PRETRAIN_WORLD",
    "SynthSummary",
    "default_train_ids",
    "generate_pretraining_world",
    "generate_synthetic",
    "identity_attributes",
    "synthetic_matches",
]
