"""Report building blocks: figures (PNG), ranked-list pictures and a self-contained HTML report.

Used by ``svllreid eval`` and by training runs to write ``report.html`` and the same figures as PNG
files. Every function that writes a file writes it atomically and creates its parent folders.
"""

from svllreid.report._io import atomic_write_bytes
from svllreid.report.html import Section, write_report
from svllreid.report.plots import (
    PROTOCOL_NOTES,
    STAGE_TITLES,
    plot_cmc,
    plot_dynamics,
    plot_embedding,
    plot_losses,
    plot_metrics_table,
    plot_validation,
    plot_verification,
    read_metrics,
)
from svllreid.report.ranked import RankedList, draw_ranked_lists

__all__ = [
    "PROTOCOL_NOTES",
    "STAGE_TITLES",
    "RankedList",
    "Section",
    "atomic_write_bytes",
    "draw_ranked_lists",
    "plot_cmc",
    "plot_dynamics",
    "plot_embedding",
    "plot_losses",
    "plot_metrics_table",
    "plot_validation",
    "plot_verification",
    "read_metrics",
    "write_report",
]
