"""The self-contained HTML report."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from PIL import Image

from svllreid import __version__
from svllreid.report.html import Section, write_report


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (20, 10), colour).save(path)
    return path


def _report(tmp_path: Path) -> tuple[Path, str, list[Path]]:
    images = [_png(tmp_path / "cmc.png", (255, 0, 0)), _png(tmp_path / "losses.png", (0, 0, 255))]
    sections = [
        Section(
            "Run <1>",
            facts={"dataset": "market1501", "checkpoint": "runs/x/<best>.safetensors", "device": "cpu"},
            text="First paragraph with <b>bold</b> & more.\nSecond line.\n\nSecond paragraph.",
        ),
        Section(
            "Results",
            table=[
                {"name": "untrained", "mAP": 0.123456, "rank1": 12},
                {"name": "trained", "rank1": 32, "note": None, "extra": "<i>x</i>"},
            ],
            images=[images[0], tmp_path / "gone.png"],
        ),
        Section("Training", images=[str(images[1])]),
    ]
    out = write_report(tmp_path / "run" / "report.html", "Report <svll>", sections)
    return out, out.read_text(encoding="utf-8"), images


def test_report_is_self_contained(tmp_path: Path) -> None:
    out, page, images = _report(tmp_path)
    assert out == tmp_path / "run" / "report.html"
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    lowered = page.lower()
    assert "<script" not in lowered
    assert 'src="http' not in lowered and 'href="http' not in lowered and "url(" not in lowered
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(images) == page.count("data:image/png;base64,")
    assert [base64.b64decode(u) for u in uris] == [p.read_bytes() for p in images]
    assert not any(p.name.endswith(".tmp") for p in out.parent.iterdir())


def test_report_escapes_every_string(tmp_path: Path) -> None:
    _, page, _ = _report(tmp_path)
    assert "<b>" not in page and "<i>" not in page and "<svll>" not in page and "<1>" not in page
    assert "with &lt;b&gt;bold&lt;/b&gt; &amp; more.<br>Second line.</p><p>Second paragraph.</p>" in page
    assert "<title>Report &lt;svll&gt;</title>" in page
    assert "runs/x/&lt;best&gt;.safetensors" in page
    assert "&lt;i&gt;x&lt;/i&gt;" in page


def test_report_contents(tmp_path: Path) -> None:
    _, page, _ = _report(tmp_path)
    assert '<p class="missing">figure missing: gone.png</p>' in page
    assert "<tr><th>dataset</th><td>market1501</td></tr>" in page
    # union of the row keys in first-seen order; floats to 4 significant digits; None as a dash
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", page).group(1)
    assert re.findall(r"<th>(.*?)</th>", header) == ["name", "mAP", "rank1", "note", "extra"]
    assert '<td class="num">0.1235</td>' in page
    trained_row = re.search(r"<tr><td>trained</td>(.*?)</tr>", page).group(1)
    assert re.findall(r"<td[^>]*>(.*?)</td>", trained_row) == ["–", "32", "–", "&lt;i&gt;x&lt;/i&gt;"]
    # three sections: a table of contents with in-page links
    assert page.count('<a href="#section-') == 3 and 'id="section-3"' in page
    assert re.search(rf"written by svllreid {re.escape(__version__)} on \d{{4}}-\d{{2}}-\d{{2}}", page)


def test_non_image_file_gives_a_note(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.png"
    text_file.write_text("not a picture")
    page = write_report(tmp_path / "r.html", "t", [Section("s", images=[text_file])]).read_text(encoding="utf-8")
    assert "data:image" not in page and "notes.png" in page and 'class="missing"' in page
    assert "<nav>" not in page  # no table of contents for a single section
