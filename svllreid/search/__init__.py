"""Search a gallery of one's own images: a feature index with exact and faiss backends, and the live
gallery of an index with the images added and removed since it was built."""

from svllreid.errors import IndexFileError
from svllreid.search.index import BACKENDS, GalleryIndex, SearchResult
from svllreid.search.live import LiveIndex, RenumberedError

__all__ = ["BACKENDS", "GalleryIndex", "IndexFileError", "LiveIndex", "RenumberedError", "SearchResult"]
