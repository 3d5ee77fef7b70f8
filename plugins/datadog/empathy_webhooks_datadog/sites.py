"""Datadog sites: the names people use (`US1`, `EU`, `datadoghq.eu`) and their API hosts."""

from __future__ import annotations

__all__ = ["SITES", "api_base_url", "site_domain"]

#: Every documented site, by its domain.
SITES = (
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "uk1.datadoghq.com",
    "ddog-gov.com",
    "us2.ddog-gov.com",
)

_ALIASES = {
    "us1": "datadoghq.com",
    "us": "datadoghq.com",
    "us3": "us3.datadoghq.com",
    "us5": "us5.datadoghq.com",
    "eu": "datadoghq.eu",
    "eu1": "datadoghq.eu",
    "ap1": "ap1.datadoghq.com",
    "ap2": "ap2.datadoghq.com",
    "uk1": "uk1.datadoghq.com",
    "us1-fed": "ddog-gov.com",
    "gov": "ddog-gov.com",
    "us2-fed": "us2.ddog-gov.com",
}


def site_domain(site: str) -> str:
    """The site's domain from any of its names: `US1`, `us5`, `EU`, `US1-FED`, `gov`,
    `datadoghq.eu`, `app.datadoghq.eu`, `https://api.us3.datadoghq.com`."""
    if not isinstance(site, str) or not site.strip():
        raise ValueError(f"site must be a Datadog site name, got {site!r}")
    name = site.strip().lower()
    name = name.removeprefix("https://").removeprefix("http://").rstrip("/")
    if name in _ALIASES:
        return _ALIASES[name]
    for prefix in ("api.", "app."):
        if name.removeprefix(prefix) in SITES:
            return name.removeprefix(prefix)
    if name in SITES:
        return name
    known = ", ".join([*(a.upper() for a in _ALIASES), *SITES])
    raise ValueError(f"unknown Datadog site {site!r}; known: {known} (or pass base_url=)")


def api_base_url(site: str) -> str:
    """`https://api.<domain>`: where events v1 and series v2 are posted."""
    return f"https://api.{site_domain(site)}"
