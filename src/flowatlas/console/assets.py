"""Where the console's files come from: its own static folder, and npm packages (never copied).

The npm packages are installed by ``npm ci`` (scripts/env.sh) from the repository's
package.json/package-lock.json into ``node_modules``; only the files of the packages named in
:data:`VENDOR` under their distribution folders are served, at ``/vendor/<package>/<file>``.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
VENDOR: dict[str, str] = {
    "echarts": "dist",
    "cytoscape": "dist",
    "swagger-ui-dist": "",
}
"""Served npm packages -> the folder inside each that may be served."""
MEDIA = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".map": "application/json",
}


class MissingAssets(LookupError):
    """The npm packages are not installed where the console looks for them."""


REPOSITORY = Path(__file__).resolve().parents[3]
"""The source tree's root (where package.json is) for an editable install."""


def modules_root(configured: str = "node_modules") -> Path:
    """The ``service.console_assets`` folder; a relative one is taken from the repository."""
    path = Path(configured or "node_modules").expanduser()
    return path if path.is_absolute() else REPOSITORY / path


def inside(base: Path, relative: str) -> Path | None:
    """``base/relative`` if it is a served file under ``base`` (no ``..``, no hidden parts)."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p.startswith(".") or "\\" in p for p in parts):
        return None
    path = (base.joinpath(*parts)).resolve()
    if not path.is_relative_to(base.resolve()) or not path.is_file():
        return None
    if path.suffix not in MEDIA:
        return None
    return path


def vendor_file(root: Path, package: str, relative: str) -> Path | None:
    """``root/package/relative`` if that package is served and the file lies in its served
    folder (URLs keep the package's own paths: /vendor/echarts/dist/echarts.esm.min.mjs)."""
    sub = VENDOR.get(package)
    if sub is None:
        return None
    base = root / package
    if not base.is_dir():
        raise MissingAssets(
            f"npm package {package} is not installed in {root} (run 'npm ci' in the repository, "
            "as scripts/env.sh does, or set service.console_assets)"
        )
    found = inside(base, relative)
    if found is None or not found.is_relative_to((base / sub).resolve()):
        return None
    return found
