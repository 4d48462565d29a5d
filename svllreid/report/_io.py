"""Atomic file writes for the report figures (PNG bytes and matplotlib figures)."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from svllreid.fileio import atomic_write_bytes

__all__ = ["DPI", "atomic_write_bytes", "new_figure", "save_figure"]

#: Resolution of every report figure: sharp on screen, small in an HTML page.
DPI = 110


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A figure (size in inches) with its own Agg canvas and, by default, constrained layout.

    Using ``Figure`` directly (not pyplot) keeps no global state, needs no backend switch and is safe
    whatever backend pyplot was given elsewhere in the process.
    """
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Render ``figure`` to PNG and write it atomically to ``path``.

    Returns:
        The path written.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return atomic_write_bytes(path, buffer.getvalue())
