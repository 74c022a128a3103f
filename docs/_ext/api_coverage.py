"""Fail the build when a name in ``jadam.__all__`` has no API page (and list the missing ones)."""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError

import jadam


def documented_names(env: BuildEnvironment) -> set[str]:
    """Fully qualified ``jadam.*`` names that have a Python-domain description in the docs."""
    objects = env.get_domain("py").objects
    return {name for name, entry in objects.items() if not entry.aliased}


def check_api_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    documented = documented_names(env)
    missing = sorted(name for name in jadam.__all__ if f"jadam.{name}" not in documented)
    if missing:
        raise ExtensionError(
            f"{len(missing)} public name(s) in jadam.__all__ have no API page: "
            f"{', '.join(missing)}. Add them to docs/api.md."
        )


def setup(app: Sphinx) -> dict:
    app.connect("env-check-consistency", check_api_coverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
