"""The one jinja2 environment: our own templates only, StrictUndefined, autoescaped.

Azure's or a user's text is only ever passed in as *values*, never rendered as a template.
Rendering errors are re-raised without the template context (it could hold secrets).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import ToolkitError

if TYPE_CHECKING:  # imported when the first template is rendered: `inspect` renders none
    import jinja2


def templates_dir() -> Path:
    """Inside the wheel: ``toolkit/templates``; in a checkout: the top-level ``templates/``."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "templates"


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _template(name: str) -> jinja2.Template:
    """Compiled once per process: jinja2's own cache would stat the file at every render.

    Its globals (jinja2's own: range, dict, ...; we add none) become one plain dict: jinja2
    keeps them as a ChainMap over the environment's, walked in Python at every render."""
    template = environment().get_template(name)
    template.globals = dict(template.globals)
    return template


def preload(*names: str) -> None:
    """Compile these templates now (a batch does it before it forks its workers, which then
    start with them compiled); a missing or broken one is reported when it is rendered."""
    import jinja2

    for name in names:
        try:
            _template(name)
        except jinja2.TemplateError:
            continue


def render(template: str, **context: Any) -> str:
    import jinja2

    try:
        return _template(template).render(**context)
    except jinja2.TemplateNotFound:
        raise ToolkitError(
            f"template {template} is missing from the installation",
            hint="reinstall ovpn-toolkit",
        ) from None
    except jinja2.UndefinedError as exc:
        # the message names only the missing variable, never the context's values
        raise ToolkitError(f"template {template}: {exc.message}") from None
