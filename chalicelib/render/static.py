"""What validation finds in a template without rendering it.

Validation renders every message template against sample data, which checks the
branches that data takes. A branch it does not take (``{% if order.total > 1000 %}``)
could still hold a typo, an unknown filter, a missing include or a sandbox escape
that only some customers' sends would meet. This pass walks each template's syntax
tree for the problems that need no data:

- attributes the sandbox refuses (``__class__``, ``mro``, ``func_globals``...), also
  through ``|attr('...')``, ``x['__class__']`` or a fixed ``'{0.__class__}'.format``
  string (a key with one underscore is data where the samples show a mapping);
- filters and tests the environment does not have, also named in a string
  (``|map('shout')``, ``|select('odd')``, ``|selectattr('x', 'eq', 1)``);
- includes, imports and layouts named in the template that are not in the set;
- variables no sample context has: an undeclared name (``custmer``), or a fixed path
  from one (``customer.nmae``), unless the template tests it somewhere (an ``if``
  reads it, also through a ``set`` flag, ``x and ...``, ``is defined``, ``|default``,
  ``'k' in x``, ``x.get('k')``; a layout's guard around a block counts for the block),
  as optional data is tested, or tests a path above it that the samples leave empty
  (``{% if survey %}`` in a step without a survey). An index past the end of a sample
  list is not judged (another customer's list may be longer), nor is a branch on
  ``campaign.id`` that the campaign being checked never takes. Variables of a partial
  or layout another file uses are not judged either: they come from that file (a
  loop's ``item``, its ``set`` tags), and its render checks them.

It reports only what it is sure of; the render stays the judge of everything else
(and its message wins where both find a problem on the same line).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
)

from chalicelib.render.sandbox import AftercareSandbox

_UNSAFE = frozenset({"mro", *UNSAFE_FUNCTION_ATTRIBUTES, *UNSAFE_METHOD_ATTRIBUTES,
                     *UNSAFE_GENERATOR_ATTRIBUTES, *UNSAFE_COROUTINE_ATTRIBUTES,
                     *UNSAFE_ASYNC_GENERATOR_ATTRIBUTES})
_GUARD_TESTS = frozenset({"defined", "undefined", "none"})
_GUARD_FILTERS = frozenset({"default", "d"})
_MISSING = object()
Finding = tuple[int, str]  # (line, message)


def unsafe_attribute(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith("_") or name in _UNSAFE)


def referenced_templates(env: AftercareSandbox, sources: Mapping[str, str]) -> set[str]:
    """The files of ``sources`` that another one includes, imports or extends: they
    render with that file's variables (a loop's ``item``, its ``set``s, its guards),
    so their data is not judged alone."""
    found: set[str] = set()
    for source in sources.values():
        try:
            tree = env.parse(source)
            names = list(meta.find_referenced_templates(tree))
        except (TemplateSyntaxError, RecursionError):
            continue  # compiling reports it (nested too deeply: a problem line)
        found.update(name for name in names if name is not None)
    return found


def include_cycles(env: AftercareSandbox, sources: Mapping[str, str],
                   ) -> dict[str, tuple[int | None, list[str]]]:
    """Files that include, import or extend themselves, directly or through others
    (by literal names): file -> (line of its reference into the cycle, the cycle).

    Such a recursion ends only at Python's recursion limit, whose depth depends on
    the caller's stack (the sender, simulate, a forked worker): refused instead."""
    edges: dict[str, dict[str, int | None]] = {}
    for filename, source in sources.items():
        try:
            tree = env.parse(source, filename)
            links = list(tree.find_all((nodes.Include, nodes.Import, nodes.FromImport,
                                        nodes.Extends)))
        except (TemplateSyntaxError, RecursionError):
            continue  # compiling reports it
        refs: dict[str, int | None] = {}
        for node in links:
            target = getattr(node, "template", None)
            if isinstance(target, nodes.Const) and isinstance(target.value, str):
                refs.setdefault(target.value, node.lineno)
        edges[filename] = refs
    found: dict[str, tuple[int | None, list[str]]] = {}
    for start in sorted(edges):
        # Depth-first from ``start``: a path back to it is a cycle through it.
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack and start not in found:
            name, path = stack.pop()
            for ref in edges.get(name, {}):
                if ref == start:
                    found[start] = (edges[start].get(path[1] if len(path) > 1 else start),
                                    [*path, start])
                    break
                if ref not in seen and ref in edges:
                    seen.add(ref)
                    stack.append((ref, [*path, ref]))
    return found


def static_problems(env: AftercareSandbox, filename: str, source: str,
                    contexts: Sequence[Mapping[str, Any]], *,
                    judge_data: bool = True) -> list[Finding]:
    """The problems in ``source`` (template ``filename``) found without rendering.

    ``contexts`` are the variables renders of it get (each sample context as the
    renderer passes it); a name or path is reported only when none of them has it.
    ``judge_data=False`` (a partial or layout other files use) checks everything
    but variables.
    """
    try:
        tree = env.parse(source, filename)
    except (TemplateSyntaxError, RecursionError):
        return []  # compiling reports it
    loader = env.loader
    known = set(loader.list_templates()) if loader is not None else set()
    roots = _context_roots(env, tree) if contexts and judge_data else set()
    unknown = {name for name in roots if not any(name in c for c in contexts)}
    if any(True for _ in tree.find_all(nodes.Extends)):
        # Its layout may bind names (imports, sets) its blocks use: only the
        # context's own names are judged.
        roots -= unknown
        unknown = set()
    found: list[Finding] = []
    found += _unsafe(tree, unknown, roots, contexts)
    found += _unknown_filters_and_tests(env, tree)
    found += _missing_templates(tree, known)
    if roots:
        # A layout's guard around a block covers what the block reads.
        guarded = _guarded_paths(tree) | _layout_guards(env, tree, known)
        found += _undefined(tree, roots, unknown, contexts, guarded,
                            _dead_nodes(tree, contexts))
    return sorted(dict.fromkeys(found))


def _layout_guards(env: AftercareSandbox, tree: nodes.Template,
                   known: set[str]) -> set[tuple[Any, ...]]:
    """The guarded paths of the layouts ``tree`` extends, up the chain."""
    guarded: set[tuple[Any, ...]] = set()
    seen: set[str] = set()
    todo = [tree]
    while todo and len(seen) < 16:
        current = todo.pop()
        for ext in current.find_all(nodes.Extends):
            name = ext.template.value if isinstance(ext.template, nodes.Const) else None
            if not isinstance(name, str) or name in seen or name not in known:
                continue
            seen.add(name)
            try:
                assert env.loader is not None
                layout = env.parse(env.loader.get_source(env, name)[0], name)
            except Exception:  # compiling the layout reports it
                continue
            guarded |= _guarded_paths(layout)
            todo.append(layout)
    return guarded


# Context paths a branch may be decided on for each campaign (its own sample
# values are exact), so a shared template's branch for another campaign is not
# judged against this one's data. `step` is not among them: its sample is generic.
_DECIDABLE_ROOTS = frozenset({"campaign"})


def _dead_nodes(tree: nodes.Template, contexts: Sequence[Mapping[str, Any]]) -> set[int]:
    """Ids of the nodes inside ``{% if campaign.id == '...' %}`` branches that no
    context takes."""
    dead: set[int] = set()
    for branch in tree.find_all(nodes.If):
        taken = _decide(branch.test, contexts)
        if taken is None:
            continue
        parts: list[nodes.Node] = [*branch.elif_, *branch.else_] if taken else list(branch.body)
        for part in parts:
            dead.add(id(part))
            dead.update(id(n) for n in part.find_all(nodes.Node))
    return dead


def _decide(test: nodes.Node, contexts: Sequence[Mapping[str, Any]]) -> bool | None:
    """The value of ``campaign.id == 'x'`` (or ``!=``) when every context gives the
    same one; None for any other test."""
    if not (isinstance(test, nodes.Compare) and len(test.ops) == 1
            and test.ops[0].op in ("eq", "ne") and contexts):
        return None
    left, right = test.expr, test.ops[0].expr
    if isinstance(left, nodes.Const):
        left, right = right, left
    path = _path(left)
    if not isinstance(right, nodes.Const) or path is None or path[0] not in _DECIDABLE_ROOTS:
        return None
    results = set()
    for context in contexts:
        value = _value(path, context)
        if value is _MISSING:
            return None
        results.add((value == right.value) == (test.ops[0].op == "eq"))
    return results.pop() if len(results) == 1 else None


def _unsafe(tree: nodes.Template, undefined_roots: set[str], roots: set[str],
            contexts: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """The first refused attribute of each expression (``''.__class__.__mro__`` once).

    A dunder or a name the sandbox blocks always counts; a key with one leading
    underscore (``customer.attributes._nickname``) counts only where the samples show
    its owner is not a mapping (the sandbox reads a mapping's data keys first).
    """
    for node in _outermost_paths(tree):
        chain: list[nodes.Node] = []
        root: nodes.Node = node
        while isinstance(root, (nodes.Getattr, nodes.Getitem)):
            chain.append(root)
            root = root.node
        if isinstance(root, nodes.Name) and root.name in undefined_roots:
            continue  # reported as an undefined variable, as a render reports it
        for link in reversed(chain):  # from the root outwards
            if isinstance(link, nodes.Getattr):
                name: Any = link.attr
            elif isinstance(link, nodes.Getitem) and isinstance(link.arg, nodes.Const):
                name = link.arg.value
            else:
                continue
            if not unsafe_attribute(name):
                continue
            if not name.startswith("__") and name not in _UNSAFE:  # `_nickname`
                owner = _path(link.node)
                if owner is None or owner[0] not in roots or not _not_a_mapping(
                        owner, contexts):
                    continue
            shown = _dotted(link)
            where = f" (in {shown})" if shown else ""
            yield link.lineno, f"not allowed: access to attribute {name!r}{where}"
            break
    yield from _unsafe_by_name(tree)


def _unsafe_by_name(tree: nodes.Template) -> Iterator[Finding]:
    """Refused attributes named in a string: ``|attr('__class__')``, format fields."""
    for f in tree.find_all(nodes.Filter):
        if f.name == "attr" and f.args and isinstance(f.args[0], nodes.Const) and (
                unsafe_attribute(f.args[0].value)):
            yield f.lineno, f"not allowed: access to attribute {f.args[0].value!r}"
    for call in tree.find_all(nodes.Call):
        # `'{0.__class__}'.format(x)`: the fields of a fixed format string.
        fn = call.node
        if (isinstance(fn, nodes.Getattr) and fn.attr in ("format", "format_map")
                and isinstance(fn.node, nodes.Const) and isinstance(fn.node.value, str)):
            for name in _format_attributes(fn.node.value):
                if unsafe_attribute(name):
                    yield call.lineno, (f"not allowed: access to attribute {name!r} "
                                        "(in a format string)")
                    break


def _format_attributes(text: str) -> Iterator[str]:
    """The attribute and key names the fields of a ``str.format`` string read."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f]
    except ValueError:
        return  # a malformed format fails when rendered
    for field in fields:
        yield from (part for part in re.split(r"[.\[\]]", field)[1:] if part)


def _unknown_filters_and_tests(env: AftercareSandbox,
                               tree: nodes.Template) -> Iterator[Finding]:
    for line, kind, name in unknown_names(env, tree):
        yield line, f"unknown {kind} {name!r}"


def unknown_names(env: AftercareSandbox, tree: nodes.Template,
                  ) -> Iterator[tuple[int, str, str]]:
    """``(line, "filter" or "test", name)`` of each filter and test ``tree`` uses
    that ``env`` does not have, named in the syntax or as a string (``|map('x')``)."""
    for used in tree.find_all(nodes.Filter):
        if used.name not in env.filters:
            yield used.lineno, "filter", used.name
    for block in tree.find_all(nodes.FilterBlock):
        if block.filter.name not in env.filters:
            yield block.lineno, "filter", block.filter.name
    for test in tree.find_all(nodes.Test):
        if test.name not in env.tests:
            yield test.lineno, "test", test.name
    # Names given as strings: `|map('upper')`, `|select('odd')`, `|selectattr('x', 'eq', 1)`.
    for used in tree.find_all(nodes.Filter):
        position, kind = _NAMED_ARGUMENT.get(used.name, (None, ""))
        if position is None or len(used.args) <= position:
            continue
        if used.name == "map" and any(k.key == "attribute" for k in used.kwargs):
            continue
        arg = used.args[position]
        names = env.filters if kind == "filter" else env.tests
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and (
                arg.value not in names):
            yield used.lineno, kind, arg.value


# Filters that take another filter's or test's name: (argument position, kind).
_NAMED_ARGUMENT: dict[str, tuple[int, str]] = {
    "map": (0, "filter"), "select": (0, "test"), "reject": (0, "test"),
    "selectattr": (1, "test"), "rejectattr": (1, "test"),
}


def _missing_templates(tree: nodes.Template, known: set[str]) -> Iterator[Finding]:
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = node.template  # type: ignore[attr-defined]  # all four have one
        names: list[Any] = []
        if isinstance(target, nodes.Const):
            names = [target.value]
        elif isinstance(target, (nodes.List, nodes.Tuple)):
            # `{% include ['a.j2', 'b.j2'] %}` needs one of them.
            values = [item.value for item in target.items if isinstance(item, nodes.Const)]
            if len(values) == len(target.items) and not any(v in known for v in values):
                names = values[:1]
        ignore_missing = isinstance(node, nodes.Include) and node.ignore_missing
        for name in names:
            if isinstance(name, str) and name not in known and not ignore_missing:
                yield node.lineno, f"template {name!r} not found in the templates folder"


def _context_roots(env: AftercareSandbox, tree: nodes.Template) -> set[str]:
    """The names the template reads from its context (not globals, never bound here).

    A name the template also binds (a loop variable, a ``set``, a macro argument)
    may be a local where it is used: only names never bound are judged.
    """
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    bound.update(m.name for m in tree.find_all(nodes.Macro))
    bound.update(i.target for i in tree.find_all(nodes.Import))
    for f in tree.find_all(nodes.FromImport):
        bound.update(n if isinstance(n, str) else n[1] for n in f.names)
    return {name for name in meta.find_undeclared_variables(tree) - bound
            if name not in env.globals}


def _undefined(tree: nodes.Template, roots: set[str], unknown: set[str],
               contexts: Sequence[Mapping[str, Any]], guarded: set[tuple[Any, ...]],
               dead: set[int]) -> Iterator[Finding]:
    """Context names no context has (``unknown``), then fixed paths from the others
    that none has, each unless the template tests it somewhere."""
    reported: set[str] = set()
    for used in tree.find_all(nodes.Name):
        name = used.name
        if name in unknown and name not in reported and (name,) not in guarded \
                and id(used) not in dead:
            reported.add(name)
            yield used.lineno, f"undefined variable {name!r}"
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    for node in _outermost_paths(tree):
        links = _links(node)
        if links is None or id(node) in dead:
            continue
        path = tuple(key for key, _ in links)
        if path[0] not in roots or path[0] in unknown or any(
                unsafe_attribute(key) for key in path[1:]):
            continue  # not a context path, or reported as a name or as refused
        missing_at = _first_missing(links, contexts, id(node) in called)
        if missing_at is None:
            continue
        reached = path[: missing_at + 1]
        if reached in guarded or any(
                reached[:i] in guarded and _empty_everywhere(reached[:i], contexts)
                for i in range(1, len(reached))):
            continue
        yield node.lineno, f"undefined variable {_shown(reached)!r}"


def _empty_everywhere(path: tuple[Any, ...], contexts: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``path`` is missing or empty (None, ``{}``) in every context: a guard on
    it (``{% if survey %}``) then stands for data the samples do not show, while under
    a path they fill, a key they lack is a typo (``order.totl`` under ``{% if order %}``)."""
    return not any(value is not _MISSING and value
                   for value in (_value(path, context) for context in contexts))


def _outermost_paths(tree: nodes.Template) -> Iterator[nodes.Node]:
    """``customer.address.city`` once, not also ``customer.address``."""
    inner: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in inner:
            continue
        child: nodes.Node = node.node  # type: ignore[attr-defined]  # both kinds have one
        while isinstance(child, (nodes.Getattr, nodes.Getitem)):
            inner.add(id(child))
            child = child.node
        yield node


def _links(node: nodes.Node) -> list[tuple[Any, bool]] | None:
    """``customer['x'].name`` as ``[("customer", True), ("x", False), ("name", True)]``
    (each key, and whether it is read as an attribute); None unless every part is fixed."""
    parts: list[tuple[Any, bool]] = []
    while True:
        if isinstance(node, nodes.Name):
            parts.append((node.name, True))
            parts.reverse()
            return parts
        if isinstance(node, nodes.Getattr):
            parts.append((node.attr, True))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            parts.append((node.arg.value, False))
        else:
            return None
        node = node.node


def _path(node: nodes.Node) -> tuple[Any, ...] | None:
    """``customer.name`` as ``("customer", "name")``; None unless every part is fixed."""
    links = _links(node)
    return None if links is None else tuple(key for key, _ in links)


def _value(path: tuple[Any, ...], context: Mapping[str, Any]) -> Any:
    value: Any = context
    for key in path:
        value = _step(value, key)
        if value is _MISSING:
            break
    return value


def _not_a_mapping(path: tuple[Any, ...], contexts: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``path`` holds a value in some context and never a mapping."""
    values = [v for v in (_value(path, c) for c in contexts) if v is not _MISSING]
    return bool(values) and not any(isinstance(v, Mapping) for v in values)


def _first_missing(links: Sequence[tuple[Any, bool]], contexts: Sequence[Mapping[str, Any]],
                   called: bool = False) -> int | None:
    """The index of the first part of a path no context has, or None when one has it all.

    Attribute access falls back as the sandbox's does: a data key, else an attribute
    or method of the value (``customer.name.upper``), else an item of a sequence; of
    a mapping, only a method called there (``x.get('k')``, not ``order.items`` on an
    order without items: that is a method, never the item list).
    """
    deepest = -1
    last = len(links) - 1
    for context in contexts:
        value: Any = context
        for i, (key, as_attribute) in enumerate(links):
            if isinstance(value, list) and isinstance(key, int) and not (
                    -len(value) <= key < len(value)):
                return None  # another customer's list may be longer: not judged
            method_ok = as_attribute and (not isinstance(value, Mapping) or (
                called and i == last))
            value = _step(value, key, method_ok)
            if value is _MISSING:
                deepest = max(deepest, i)
                break
        else:
            return None
    return deepest if deepest >= 0 else None


def _step(value: Any, key: Any, attributes: bool = True) -> Any:
    if isinstance(value, Mapping) and key in value:
        return value[key]
    if isinstance(value, (list, tuple, str)) and isinstance(key, int):
        return value[key] if -len(value) <= key < len(value) else _MISSING
    if attributes and isinstance(key, str) and not unsafe_attribute(key) and hasattr(
            value, key):
        return getattr(value, key)
    return _MISSING


def _tested(expr: nodes.Node) -> Iterator[tuple[Any, ...]]:
    """The paths whose truth a condition tests: ``survey`` in ``survey and not x.y``."""
    if isinstance(expr, (nodes.And, nodes.Or)):
        yield from _tested(expr.left)
        yield from _tested(expr.right)
    elif isinstance(expr, nodes.Not):
        yield from _tested(expr.node)
    else:
        path = _path(expr)
        if path is not None:
            yield path


def _guarded_paths(tree: nodes.Template) -> set[tuple[Any, ...]]:
    """Paths the template tests before use: ``{% if x %}``, ``a if x else b``, ``x and
    x.y``, ``x is defined``, ``x|default``, ``'k' in x``."""
    guarded: set[tuple[Any, ...]] = set()
    for cond in tree.find_all((nodes.If, nodes.CondExpr, nodes.And, nodes.Or, nodes.Not)):
        if isinstance(cond, (nodes.And, nodes.Or)):
            test: nodes.Node | None = cond.left  # `x and x.y`: the right side is a value
        elif isinstance(cond, nodes.Not):
            test = cond.node
        else:
            test = cond.test  # type: ignore[attr-defined]  # If and CondExpr
        if test is None:
            continue
        guarded.update(_tested(test))
        if isinstance(cond, (nodes.If, nodes.CondExpr)):
            # Whatever a condition reads is being tested (`x is string`, `x != none`,
            # `x|length > 1`): a typo there is a problem only where it runs.
            guarded.update(p for p in map(_path, _expressions(test)) if p is not None)
    # `{% set has_order = order.id is defined %}...{% if has_order %}`: what a flag a
    # condition reads is set from is tested too.
    flags = {n.name for cond in tree.find_all((nodes.If, nodes.CondExpr))
             for n in _expressions(cond.test)  # type: ignore[attr-defined]  # both have one
             if isinstance(n, nodes.Name)}
    for assign in tree.find_all(nodes.Assign):
        if isinstance(assign.target, nodes.Name) and assign.target.name in flags:
            guarded.update(_tested(assign.node))
            guarded.update(p for p in map(_path, _expressions(assign.node)) if p is not None)
    for call in tree.find_all(nodes.Call):
        # `x.get('k')`: the template asks whether `x.k` is there.
        fn = call.node
        if (isinstance(fn, nodes.Getattr) and fn.attr == "get" and call.args
                and isinstance(call.args[0], nodes.Const)):
            owner = _path(fn.node)
            if owner is not None:
                guarded.add((*owner, call.args[0].value))
    for node in tree.find_all((nodes.Test, nodes.Filter, nodes.Compare)):
        operand = node.node if isinstance(node, (nodes.Test, nodes.Filter)) else None
        if operand is not None and node.name in (  # type: ignore[attr-defined]
                _GUARD_TESTS if isinstance(node, nodes.Test) else _GUARD_FILTERS):
            path = _path(operand)
        elif isinstance(node, nodes.Compare) and isinstance(node.expr, nodes.Const) and any(
                op.op in ("in", "notin") for op in node.ops):
            owner = next((_path(_keys_owner(op.expr)) for op in node.ops
                          if op.op in ("in", "notin")), None)
            path = (*owner, node.expr.value) if owner is not None else None
        else:
            continue
        if path is not None:
            guarded.add(path)
    return guarded


def _expressions(expr: nodes.Node) -> Iterator[nodes.Node]:
    """``expr`` and every expression inside it."""
    yield expr
    yield from expr.find_all(nodes.Expr)


def _keys_owner(expr: nodes.Node) -> nodes.Node:
    """``x`` for ``x.keys()``, ``x|list`` or ``x.keys()|list``, else ``expr``:
    ``'k' in x.keys()`` tests ``x.k``."""
    if isinstance(expr, nodes.Filter) and expr.name == "list" and expr.node is not None:
        expr = expr.node
    if (isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Getattr)
            and expr.node.attr == "keys" and not expr.args):
        return expr.node.node
    return expr


def _shown(path: tuple[Any, ...]) -> str:
    text = str(path[0])
    for key in path[1:]:
        text += f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"
    return text


def _dotted(node: nodes.Node) -> str | None:
    path = _path(node)
    return _shown(path) if path is not None else None
