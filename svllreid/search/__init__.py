"""Search a gallery of one's own images: a feature index with exact and faiss backends."""

from svllreid.search.index import BACKENDS, GalleryIndex, IndexFileError, SearchResult

__all__ = ["BACKENDS", "GalleryIndex", "IndexFileError", "SearchResult"]
