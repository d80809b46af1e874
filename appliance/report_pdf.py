"""PDF from a report page's HTML (WeasyPrint: Pango finds the CJK font through fontconfig, e.g. Noto Sans CJK
from fonts-noto-cjk, and embeds the glyphs it uses). Blocking and CPU-heavy: run it off the event loop."""

from __future__ import annotations


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML  # imported here: loading Pango takes a moment and only reports need it

    return HTML(string=html).write_pdf()
