"""The one version of the empathy-webhooks family (the core and every first-party plugin).

`python scripts/set_version.py X.Y.Z` rewrites the `__version__` line below together with every
plugin's version and core requirement; change it there, not here by hand.
"""

__version__ = "0.1.0"


def compatible_range(version: str = __version__) -> str:
    """The core versions a plugin built against `version` (X.Y.Z) may require.

    Semantic versioning: from 1.0 on only a major release may break, so `>=X.Y,<X+1`. Before
    1.0 any minor release may break (0.2 may change what a 0.1 plugin relies on), so
    `>=0.Y,<0.Y+1`: the same rule as a caret requirement (`^0.1`) in Cargo or npm.
    """
    major, minor = (int(part) for part in version.split(".")[:2])
    if major == 0:
        return f">=0.{minor},<0.{minor + 1}"
    return f">={major}.{minor},<{major + 1}"
