"""The console's security headers: on every page, the guarded ones (`guard`) and those
rendered before a guard decides (`render`), so both import them from here."""

from __future__ import annotations

from collections.abc import MutableMapping

__all__ = ["CSP", "secure"]

#: Nothing inline, nothing from elsewhere: the page's own script and style files only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def secure(headers: MutableMapping[str, str]) -> None:
    """Put the console's security headers on an answer (before it is sent)."""
    for name, value in _HEADERS.items():
        headers.setdefault(name, value)
