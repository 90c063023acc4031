"""Griffe extension: render dpm_jax's reST-flavoured docstrings as Markdown.

dpm_jax's docstrings are Google style, with a few reStructuredText habits that
Markdown would show literally or mangle. This extension rewrites the docstring
text (not the source) before mkdocstrings parses it:

* doctest runs (``>>>`` / ``...`` lines and their output) become ``pycon``
  code blocks (Markdown would read ``>>>`` as nested block quotes);
* ``:func:`name```, ``:class:`~a.b```, ``:mod:`` ... become a code span, linked
  to the API page when griffe can resolve the name (an *optional* autoref: an
  unresolved name never fails the strict build);
* a ``.. math::`` directive becomes a ``text`` code block holding the formula;
* a paragraph ending in ``::`` loses one colon (the reST literal-block marker);
* an ``Args:`` entry naming several parameters (``t_start, t_end: ...``) becomes
  one entry per parameter, so each gets its type and default from the signature;
* a free-form field list (a line ending in ``:`` that is not a Google section,
  followed by indented ``name: text`` entries, as in ``Plan``) becomes a bullet
  list instead of one run-on paragraph;
* parameters whose name starts with ``_`` (private plumbing) leave the rendered
  signature.

Loaded from mkdocs.yml (``extensions: - docs/_ext/griffe_rst.py``).
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|mod|data|attr|meth|obj|exc):`(~?)([\w.]+)`")


def _fence_doctests(text: str) -> str:
    out: list[str] = []
    lines = text.split("\n")
    i, in_fence = 0, False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():  # a doctest run ends at a blank line
                block.append(
                    lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].strip()
                )
                i += 1
            fence = "    " if 0 < len(indent) < 4 else indent  # inside a list item: 4 spaces
            out += [fence + "```pycon"] + [fence + b for b in block] + [fence + "```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _math(text: str) -> str:
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == ".. math::":
            indent = line[: len(line) - len(line.lstrip())]
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(indent + " ")):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            width = min(len(b) - len(b.lstrip()) for b in body if b.strip())
            out += [indent + "```text"] + [indent + b[width:] for b in body] + [indent + "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


_MULTI = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:, \w+)+): (?P<desc>.*)$")


def _split_params(text: str) -> str:
    """In an ``Args:`` section, ``a, b: text`` -> ``a: text`` and ``b: see `a`.``."""
    lines = text.split("\n")
    out: list[str] = []
    in_args, i = False, 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
        elif stripped and not line[:1].isspace():
            in_args = False
        m = _MULTI.match(line) if in_args else None
        if not m:
            out.append(line)
            i += 1
            continue
        indent = m.group("indent")
        first, *rest = m.group("names").split(", ")
        out.append(f"{indent}{first}: {m.group('desc')}")
        i += 1
        while (
            i < len(lines)
            and lines[i].strip()
            and len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            out.append(lines[i])  # the entry's continuation lines
            i += 1
        out += [f"{indent}{name}: see `{first}`." for name in rest]
    return "\n".join(out)


_SECTIONS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "returns",
    "return",
    "yields",
    "yield",
    "raises",
    "raise",
    "attributes",
    "attrs",
    "examples",
    "example",
    "note",
    "notes",
    "warning",
    "warnings",
    "warns",
    "other parameters",
    "other params",
    "receives",
    "see also",
    "todo",
    "references",
    "methods",
    "functions",
    "classes",
    "modules",
    "keyword args",
    "keyword arguments",
    "deprecated",
    "type aliases",
}
_ENTRY = re.compile(r"^(?P<indent>[ \t]+)(?P<names>[\w.]+(?:, [\w.]+)*): (?P<desc>.*)$")


def _field_lists(text: str) -> str:
    """``Heading:`` + indented ``name: text`` entries -> a Markdown bullet list."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        head = line.rstrip()
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            head.endswith(":")
            and not line[:1].isspace()
            and head[:-1].strip().lower() not in _SECTIONS
            and _ENTRY.match(nxt)
        ):
            indent = _ENTRY.match(nxt).group("indent")
            out += [head, ""]
            i += 1
            while i < len(lines) and lines[i].startswith(indent) and lines[i].strip():
                m = _ENTRY.match(lines[i])
                if m and m.group("indent") == indent:
                    names = ", ".join(f"`{n}`" for n in m.group("names").split(", "))
                    out.append(f"- {names}: {m.group('desc')}")
                else:  # continuation of the previous entry
                    out[-1] += " " + lines[i].strip()
                i += 1
            out.append("")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrites the docstrings of every object of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        public = {}  # canonical path -> the public path it is rendered under
        for name in pkg.members:
            member = pkg.members[name]
            try:
                public[member.canonical_path] = member.path
            except griffe.AliasResolutionError:  # pragma: no cover
                pass
        self._walk(pkg, public, set())

    def _walk(self, obj, public, seen) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.is_alias:
            return
        if obj.docstring is not None:
            obj.docstring.value = self._convert(obj, obj.docstring.value, public)
        if obj.is_function:
            for name in [p.name for p in obj.parameters if p.name.startswith("_")]:
                del obj.parameters[name]
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, public, seen)

    @staticmethod
    def _convert(obj, text: str, public) -> str:
        def role(m: re.Match) -> str:
            short, name = m.group(1), m.group(2)
            shown = name.rsplit(".", 1)[-1] if short else name
            try:
                target = obj.resolve(name) if "." not in name else name
                target = public.get(target, target)
            except (griffe.NameResolutionError, ValueError, KeyError):
                return f"`{shown}`"
            return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'

        text = _fence_doctests(text)
        text = _math(text)
        text = _split_params(text)
        text = _field_lists(text)
        text = re.sub(r"(\S)::$", r"\1:", text, flags=re.M)
        return _ROLE.sub(role, text)
