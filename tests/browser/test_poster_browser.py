"""The waiting-room poster in Chromium: one printed page on US Letter and on A4, and the QR code
the browser draws is segno's for the signup address, module for module."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import segno
from browser_support import ADMIN_PASSWORD

from newsletter.core.config import Settings

pytestmark = pytest.mark.browser

# Draw the page's inline <svg> onto a canvas, SCALE pixels a module, and read each module's
# centre: dark or light. What the browser shows is what a phone would scan.
READ_MATRIX = """([scale]) => new Promise((done, fail) => {
  const svg = document.querySelector('.poster-code svg');
  const size = svg.viewBox.baseVal.width;
  const image = new Image();
  image.onload = () => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = size * scale;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const rows = [];
    for (let y = 0; y < size; y++) {
      const row = [];
      for (let x = 0; x < size; x++) {
        const at = ((y * scale + scale / 2) * canvas.width + (x * scale + scale / 2)) * 4;
        row.push(pixels[at] < 128 ? 1 : 0);
      }
      rows.push(row);
    }
    done(rows);
  };
  image.onerror = fail;
  const text = new XMLSerializer().serializeToString(svg);
  image.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(text);
})"""


def pdf_pages(data: bytes) -> list[tuple[float, float]]:
    """The MediaBox (width, height in points) of each page of a PDF Chromium wrote."""
    boxes = re.findall(
        rb"/Type\s*/Page\b[^s].*?/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)",
        data,
        re.S,
    )
    return [(float(b[2]) - float(b[0]), float(b[3]) - float(b[1])) for b in boxes]


def test_the_poster_prints_on_one_page_of_letter_and_a4_with_segnos_code(
    admin_server: tuple[str, Settings], browser: Any, artifacts: Path
) -> None:
    base, _ = admin_server
    page = browser.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")
    page.goto(f"{base}/admin/settings")
    page.fill("#practice_name", "Riverside Counselling")
    page.fill("#poster_line", "Short letters about therapy, one a week.")
    page.click("button:has-text('Save settings')")
    page.wait_for_url(f"{base}/admin/settings")

    for paper, fmt, size in (("letter", "Letter", (612, 792)), ("a4", "A4", (595, 842))):
        page.goto(f"{base}/admin/poster?paper={paper}")
        page.emulate_media(media="print")
        assert page.locator(".site-header").is_hidden()  # only the poster is printed
        assert page.locator(".no-print").is_hidden()
        poster = page.locator(".poster")
        assert "Riverside Counselling" in (poster.text_content() or "")
        assert "Short letters about therapy, one a week." in (poster.text_content() or "")
        address = page.text_content(".poster-address")
        assert address == base.removeprefix("http://")
        pdf = page.pdf(format=fmt, print_background=True)
        (path := artifacts / f"poster-{paper}.pdf").write_bytes(pdf)
        pages = pdf_pages(pdf)
        assert len(pages) == 1, (fmt, pages)  # one sheet
        assert all(abs(a - b) <= 1 for a, b in zip(pages[0], size, strict=True)), (fmt, pages)
        page.screenshot(path=str(artifacts / f"poster-{paper}.png"), full_page=True)
        page.emulate_media(media="screen")
        assert path.exists()

    shown = page.evaluate(READ_MATRIX, [8])
    expected = segno.make(f"{base}/", error="m", micro=False)
    border = 4
    symbol = [row[border:-border] for row in shown[border:-border]]
    assert [list(row) for row in expected.matrix] == symbol
    assert all(not any(row) for row in shown[:border] + shown[-border:])  # the quiet zone
    page.close()
