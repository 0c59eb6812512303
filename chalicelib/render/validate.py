"""Check a set of templates before it is pushed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from jinja2 import Environment, TemplateSyntaxError, nodes

from chalicelib.render.errors import RenderError
from chalicelib.render.filters import parse_locale
from chalicelib.render.limits import TOO_DEEP
from chalicelib.render.naming import CHANNELS, TemplateFile, parse_filename
from chalicelib.render.renderer import RenderedSms, Renderer
from chalicelib.render.sms import LOOKALIKES, non_gsm_characters

Severity = Literal["error", "warning"]

MAX_SMS_SEGMENTS: Final = 3
GMAIL_CLIP_BYTES: Final = 102 * 1024  # Gmail hides the rest behind "View entire message"
_REQUIRED_BLOCKS: Final = ("subject", "html")
_COLLECTABLE: Final = ("undefined variable", "not allowed: access to attribute")


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One finding: ``template`` file, 1-based ``line`` when known, ``message``."""

    template: str
    line: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.template}:{self.line}" if self.line is not None else self.template
        return f"{where}: {self.severity}: {self.message}"


def validate_templates(
    templates: Mapping[str, str],
    *,
    sample_contexts: Sequence[Mapping[str, Any]],
    required: Iterable[tuple[str, str]] = (),
    default_locale: str = "en-US",
) -> list[TemplateProblem]:
    """Find every problem in a set of templates.

    Parameters
    ----------
    templates
        ``{filename: source}``, as given to :class:`Renderer`.
    sample_contexts
        Contexts each message template (and each locale variant) is rendered
        against, with undefined values failing: pass one per trigger shape.
    required
        ``(name, channel)`` pairs the campaigns use; each must resolve.
    default_locale
        Locale of the locale-less files.

    Returns
    -------
    list[TemplateProblem]
        Errors (syntax, undefined variable, sandbox violation, missing
        template or email block, unknown locale, over-size output) and
        warnings (SMS over 3 segments, SMS forced to UCS-2 by typographic
        look-alikes, HTML over Gmail's 102 KB clip), without duplicates.
        Empty means the set is fine to push.

    Examples
    --------
    >>> from chalicelib.render import SAMPLE_CONTEXT
    >>> validate_templates({"hi.sms.j2": "Hi {{ customer.nick }}"},
    ...                    sample_contexts=[SAMPLE_CONTEXT])[0].message
    "undefined variable 'customer.nick'"
    """
    renderer = Renderer(templates, default_locale=default_locale)
    # Unknown filters and tests are reported here, each where it is; the checks
    # below then run with stand-ins for them (Jinja would stop compiling a file at
    # the first, hiding the rest of its problems, or fail at run time at a wrong line).
    unknown = renderer.unknown_names()
    if unknown:
        renderer = Renderer(templates, default_locale=default_locale, stand_ins={
            (kind, name) for names in unknown.values() for _, kind, name in names})
    found: dict[TemplateProblem, None] = {}
    seen_variants: dict[tuple[str, str, str | None], str] = {}
    compiled: list[str] = []
    for filename in sorted(templates):
        parsed = parse_filename(filename)
        problems = _check_name(filename, parsed, seen_variants)
        problems += [TemplateProblem(filename, line, f"unknown {kind} {name!r}")
                     for line, kind, name in unknown.get(filename, ())]
        try:
            renderer.compile(filename)
        except RenderError as exc:
            problems.append(TemplateProblem(exc.template, exc.line, exc.message))
        else:
            compiled.append(filename)
            if parsed is not None and not parsed.is_partial:
                problems.extend(_check_message(renderer, filename, parsed, sample_contexts))
        found.update(dict.fromkeys(problems))
    # Then what the renders could not reach (branches the samples do not take); a
    # problem a render already reported on that line keeps the render's message only.
    reported = {(p.template, p.line, _gist(p.message)) for p in found if p.severity == "error"}
    used_by_others = renderer.referenced()
    for filename in compiled:
        parsed = parse_filename(filename)
        alone = parsed is not None and not parsed.is_partial and filename not in used_by_others
        for e in renderer.static_problems(filename, sample_contexts, judge_data=alone):
            if (e.template, e.line, _gist(e.message)) not in reported:
                found[TemplateProblem(e.template, e.line, e.message)] = None
    # On a line holding an unknown filter or test, what the stand-in made of it (a
    # value |defualt('x') did not replace, a count |lenght did not take) is not
    # another problem: that line reports the unknown name only.
    at_unknown = {(f, line) for f, names in unknown.items() for line, _, _ in names}
    for problem in [p for p in found if (p.template, p.line) in at_unknown
                    and not p.message.startswith("unknown ")]:
        del found[problem]
    # An include cycle is one problem, named once (at its first file by name); the
    # render's nesting error at one of its include lines is that cycle again.
    cycles = renderer.include_cycles()
    at_cycle = {(filename, line) for filename, (line, _) in cycles.items()}
    for problem in [p for p in found if (p.template, p.line) in at_cycle
                    and TOO_DEEP in p.message]:
        del found[problem]
    named: set[frozenset[str]] = set()
    for filename, (line, cycle) in sorted(cycles.items()):
        if frozenset(cycle) in named:
            continue
        named.add(frozenset(cycle))
        found[TemplateProblem(filename, line, (
            f"includes itself ({' -> '.join(cycle)}): a template may not include, "
            f"import or extend itself; use a macro"))] = None
    for name, channel in required:
        found.update(dict.fromkeys(_check_required(renderer, name, channel)))
    return list(found)


def _gist(message: str) -> str:
    """What a problem is about, however it is worded: the name it quotes first. The
    render says "not allowed: access to attribute '__class__' of 'str' object is
    unsafe." or, for ``'x'|attr('__globals__')``, "undefined variable '__globals__'
    ...", the reading of the source "not allowed: access to attribute '__globals__'":
    one problem each."""
    return message.partition("'")[2].partition("'")[0] or message


def _check_name(
    filename: str,
    parsed: TemplateFile | None,
    seen: dict[tuple[str, str, str | None], str],
) -> list[TemplateProblem]:
    if parsed is None:
        if "/" in filename or filename.startswith("_"):
            return []
        return [
            TemplateProblem(
                filename,
                None,
                "not a message template name ({name}.sms.j2, {name}.email.j2, "
                "{name}.{locale}.sms.j2); it can only be included or extended",
                "warning",
            )
        ]
    if parsed.locale is not None and parse_locale(parsed.locale) is None:
        return [TemplateProblem(filename, None, f"unknown locale {parsed.locale!r}")]
    first = seen.setdefault((parsed.name, parsed.channel, parsed.locale), filename)
    if first != filename:
        return [TemplateProblem(filename, None, f"same template and locale as {first}")]
    return []


def _check_message(
    renderer: Renderer,
    filename: str,
    parsed: TemplateFile,
    sample_contexts: Sequence[Mapping[str, Any]],
) -> list[TemplateProblem]:
    problems: list[TemplateProblem] = []
    if parsed.channel == "email":
        missing = _missing_blocks(renderer.templates, filename)
        if missing:
            return [
                TemplateProblem(filename, None, f"missing {{% block {block} %}}")
                for block in missing
            ]
        problems += _stray_blocks(renderer.templates, filename)
    rendered: list[RenderedSms] = []
    for context in sample_contexts:
        try:
            if parsed.channel == "sms":
                rendered.append(renderer.render_sms_file(filename, context))
            else:
                email = renderer.render_email_file(filename, context)
                if len(email.html.encode("utf-8")) > GMAIL_CLIP_BYTES:
                    problems.append(
                        TemplateProblem(
                            filename, None, "HTML over 102 KB: Gmail clips it", "warning"
                        )
                    )
        except RenderError as exc:
            found = [exc]
            if exc.message.startswith(_COLLECTABLE):
                # A render stops at the first undefined variable: list them all.
                found = renderer.undefined_problems(filename, context) or found
            problems.extend(TemplateProblem(e.template, e.line, e.message) for e in found)
            if exc.message.startswith("not allowed"):
                break  # a sandbox limit: other sample contexts would hit it again, slowly
    return problems + _sms_warnings(filename, rendered)


def _sms_warnings(filename: str, rendered: Sequence[RenderedSms]) -> list[TemplateProblem]:
    problems: list[TemplateProblem] = []
    longest = max(rendered, key=lambda sms: sms.segments, default=None)
    if longest is not None and longest.segments > MAX_SMS_SEGMENTS:
        problems.append(
            TemplateProblem(
                filename,
                None,
                f"SMS is {longest.segments} segments ({longest.characters} {longest.encoding}"
                f" units); keep it to {MAX_SMS_SEGMENTS} or fewer",
                "warning",
            )
        )
    for sms in rendered:
        odd = non_gsm_characters(sms.body)
        if odd and all(char in LOOKALIKES for char in odd):
            shown = ", ".join(f"{c!r} (U+{ord(c):04X}) -> {LOOKALIKES[c]!r}" for c in odd)
            problems.append(
                TemplateProblem(
                    filename,
                    None,
                    f"SMS is sent as UCS-2 (70 characters per segment, not 160) only "
                    f"because of {shown}",
                    "warning",
                )
            )
            break
    return problems


def _layout_chain(sources: Mapping[str, str], filename: str) -> list[nodes.Template] | None:
    """The parsed email and the layouts it extends, in order; None when that cannot
    be known statically (a syntax error, a missing, dynamic or looping layout: the
    render reports those)."""
    env = Environment()
    chain: list[nodes.Template] = []
    current: str | None = filename
    visited: set[str] = set()
    while current is not None:
        if current in visited:
            return None
        visited.add(current)
        try:
            tree = env.parse(sources[current])
        except (TemplateSyntaxError, KeyError, RecursionError):
            return None
        chain.append(tree)
        parents = list(tree.find_all(nodes.Extends))
        current = None
        if parents:
            target = parents[0].template
            if not isinstance(target, nodes.Const):
                return None
            current = str(target.value)
    return chain


def _missing_blocks(sources: Mapping[str, str], filename: str) -> list[str]:
    """Blocks the email (with the layouts it extends) lacks; [] if unknowable."""
    chain = _layout_chain(sources, filename)
    if chain is None:
        return []
    defined = {block.name for tree in chain for block in tree.find_all(nodes.Block)}
    return [block for block in _REQUIRED_BLOCKS if block not in defined]


_EMAIL_PARTS: Final = ("subject", "html", "text")


def _stray_blocks(sources: Mapping[str, str], filename: str) -> list[TemplateProblem]:
    """Blocks of an email that are never sent: not a part (``subject``, ``html``,
    ``text``), not inside one, and not a block its layouts place (a misspelt
    ``{% block txt %}`` is silently dropped by Jinja)."""
    chain = _layout_chain(sources, filename)
    if chain is None:
        return []
    tree, layouts = chain[0], chain[1:]
    placed = {block.name for layout in layouts for block in layout.find_all(nodes.Block)}
    inside = {id(inner) for part in tree.find_all(nodes.Block) if part.name in _EMAIL_PARTS
              for inner in part.find_all(nodes.Block)}
    return [
        TemplateProblem(filename, block.lineno,
                        f"{{% block {block.name} %}} is never sent: an email sends its "
                        "subject, html and text blocks (and the blocks its layout places)",
                        "warning")
        for block in tree.find_all(nodes.Block)
        if block.name not in _EMAIL_PARTS and block.name not in placed
        and id(block) not in inside
    ]


def _check_required(renderer: Renderer, name: str, channel: str) -> list[TemplateProblem]:
    expected = f"{name}.{channel}.j2"
    if channel not in CHANNELS:
        return [TemplateProblem(expected, None, f"unknown channel {channel!r}")]
    if renderer.has_template(name, channel):
        return []
    return [
        TemplateProblem(expected, None, f"missing template: a campaign sends {channel} {name!r}")
    ]
