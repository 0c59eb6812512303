"""Exceptions raised by the renderer.

All of them derive from :class:`TemplateError`, and carry machine-readable
details (``template``, ``line``, ``message``) so callers never parse strings.
"""

from __future__ import annotations


class TemplateError(Exception):
    """Root of every error raised by :mod:`chalicelib.render`."""


class RenderError(TemplateError):
    """A template could not be rendered.

    Parameters
    ----------
    template
        File name of the template at fault (the innermost one: a layout or an
        included partial when the problem is there).
    line
        1-based line in that file, when known.
    message
        What went wrong, in words a template author understands.
    """

    def __init__(self, template: str, line: int | None, message: str,
                 redacted: str | None = None) -> None:
        self.template = template
        self.line = line
        self.message = message
        where = f"{template}:{line}" if line is not None else template
        # The error without the values it may quote (a customer's data): what a send
        # records and logs. The message itself is for template authors (validation,
        # preview), who see sample or their own data.
        self.redacted = f"{where}: {redacted or message}"
        super().__init__(f"{where}: {message}")


class TemplateNotFoundError(RenderError):
    """No template exists for the requested name, channel and locale."""

    def __init__(self, name: str, channel: str, locale: str | None) -> None:
        self.name = name
        self.channel = channel
        self.locale = locale
        suffix = f" (locale {locale})" if locale else ""
        super().__init__(
            f"{name}.{channel}.j2", None, f"no {channel} template named {name!r}{suffix}"
        )
