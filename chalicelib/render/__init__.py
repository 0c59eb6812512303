"""Sandboxed Jinja2 rendering of SMS and email messages.

Templates live in memory (``{filename: source}``), as stored with each
campaign version; :func:`load_template_dir` builds such a mapping locally.
"""

from __future__ import annotations

from chalicelib.render.errors import RenderError, TemplateError, TemplateNotFoundError
from chalicelib.render.renderer import (
    MAX_EMAIL_BYTES,
    MAX_SMS_CHARS,
    RenderedEmail,
    RenderedSms,
    Renderer,
    load_template_dir,
)
from chalicelib.render.sample import SAMPLE_CONTEXT
from chalicelib.render.sms import sms_encoding_info
from chalicelib.render.validate import TemplateProblem, validate_templates

__all__ = [
    "MAX_EMAIL_BYTES",
    "MAX_SMS_CHARS",
    "SAMPLE_CONTEXT",
    "RenderError",
    "RenderedEmail",
    "RenderedSms",
    "Renderer",
    "TemplateError",
    "TemplateNotFoundError",
    "TemplateProblem",
    "load_template_dir",
    "sms_encoding_info",
    "validate_templates",
]
