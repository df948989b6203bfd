"""marathon-pullsecret-controller: keeps private-registry pull credentials working on Marathon."""

__version__ = "0.1.0"
"""The one place the version is written: the package metadata reads it from here
(``pyproject.toml``), and the controller names itself with it without reading that metadata
(a cost every start-up would pay)."""
