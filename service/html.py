"""HTML answers (the finance page, invoice documents): every one with the same safety headers.

No script, nothing loaded from elsewhere, never framed, never cached: a document that holds a
merchant's name and figures must not run anything it contains, be shown inside another site,
or be kept by a shared cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar import MediaType, Request, Response

from service.errors import Forbidden

SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


FONTS_PREFIX: Final = "/static/fonts"
FONTS_DIRECTORY: Final = Path(__file__).parent / "invoicing" / "fonts"
CJK_FONT_FACE: Final = (
    '@font-face{font-family:"Kefu CJK";font-display:swap;'
    'src:local("PingFang SC"),local("Microsoft YaHei"),local("Noto Sans CJK SC"),'
    'local("Source Han Sans SC"),'
    f'url("{FONTS_PREFIX}/NotoSansSC-Regular.ttf") format("truetype");'
    "unicode-range:U+2E80-2FFF,U+3000-303F,U+3400-4DBF,U+4E00-9FFF,U+F900-FAFF,U+FE30-FE4F,"
    "U+FF00-FFEF}"
)
"""Chinese text on pages shown in a browser: a CJK font the computer has, else the vendored
one (the invoice PDF's), fetched once. Only for CJK characters (``unicode-range``): other text
keeps the system's font. Pages put ``CJK_FONTS`` first in their font stack."""
CJK_FONTS: Final = '"Kefu CJK"'


def html_response(content: str, status_code: int = 200) -> Response[str]:
    return Response(
        content, media_type=MediaType.HTML, status_code=status_code, headers=SECURITY_HEADERS
    )


def pdf_response(content: bytes, filename: str) -> Response[bytes]:
    """A PDF document, shown in the browser (``inline``), with the same safety headers."""
    return Response(
        content,
        media_type="application/pdf",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'inline; filename="{filename}"',
        },
    )


def require_same_origin(request: Request[object, object, object]) -> None:
    """A form post must come from a page of ours: its ``Origin`` (or, when a browser sends
    none, its ``Referer``) names this very site. Anything else is a cross-site post (403)."""
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    if origin is not None:
        if origin == own:
            return
    else:
        referer = request.headers.get("referer", "")
        if referer == own or referer.startswith(own + "/"):
            return
    raise Forbidden(
        "this form only accepts posts from this site's own pages (Origin or Referer must be "
        f"{own}): open {own}/finance/login and submit it there",
        field="Origin",
    )
