"""Inference: a trained network turned into features of images and descriptions.

A checkpoint rebuilt (:mod:`.trained`), its image branch compiled or exported and loaded back
(:mod:`.image_branch`, :mod:`.query_encoder`, :mod:`.onnx_backend`), all behind one interface
(:class:`.model_protocol.FeatureModel`); features of files and loaders (:mod:`.features`), the
tracker-facing :class:`.extractor.FeatureExtractor`, descriptions through the text encoder
(:mod:`.text_encoding`, :mod:`.text_query`), and the search use case shared by ``svllreid search``
and ``svllreid serve`` (:mod:`.gallery_search`).
"""
