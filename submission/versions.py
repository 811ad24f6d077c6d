"""Installed package versions, the one way the project reads them (self-check, run records, bundle manifests)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_versions(names) -> dict[str, str | None]:
    """Distribution name -> installed version, None where it is not installed (in ``names``' order)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found
