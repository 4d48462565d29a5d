"""Search a gallery of one's own images: a feature index with exact and faiss backends."""

from svllreid.errors import IndexFileError
from svllreid.search.index import BACKENDS, GalleryIndex, SearchResult

__all__ = ["BACKENDS", "GalleryIndex", "IndexFileError", "SearchResult"]
