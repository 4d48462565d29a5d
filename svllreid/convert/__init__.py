"""Checkpoints of other codebases in and out: the layout the CLIP-ReID and SVLL-ReID authors save
(:mod:`.authors_layout`), what a config adds to what a file tells (:mod:`.settings`), import
(:mod:`.importer`) and the reverse (:mod:`.to_authors`)."""
