"""HTML answers (the finance page, invoice documents): every one with the same safety headers.

No script, nothing loaded from elsewhere, never framed, never cached: a document that holds a
merchant's name and figures must not run anything it contains, be shown inside another site,
or be kept by a shared cache.
"""

from __future__ import annotations

from typing import Final

from litestar import MediaType, Request, Response

from service.errors import Forbidden

SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def html_response(content: str, status_code: int = 200) -> Response[str]:
    return Response(
        content, media_type=MediaType.HTML, status_code=status_code, headers=SECURITY_HEADERS
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
