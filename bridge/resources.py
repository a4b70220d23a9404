"""Where the product's files are: ``sql/``, ``templates/`` and ``static/``.

They are top-level folders of the repository; the wheel carries them inside the package as
``bridge/resources/<name>``. An installed bridge finds them there through ``importlib.resources``,
an editable install of a checkout finds them beside the package.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from bridge.errors import ConfigError


def folder(name: str) -> Path:
    """The folder ``name`` (``sql``, ``templates`` or ``static``) as a directory on disk."""
    installed = files("bridge") / "resources" / name
    if installed.is_dir():
        # A wheel is installed unpacked, so this is a plain directory and stays valid.
        with as_file(installed) as path:
            return Path(path)
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    raise ConfigError(f"the bridge's {name}/ folder is missing: reinstall the package")
