"""Sphinx configuration for the gameframe documentation."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docstrings import prepare_docstring
from sphinx.util.docutils import SphinxDirective

# Document the checkout these docs live in, installed or not.
sys.path.insert(0, os.path.abspath(".."))

from gameframe._version import __version__  # noqa: E402

project = "gameframe"
author = "the gameframe authors"
copyright = "the gameframe authors"
version = __version__
release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Anchors for "## Heading" so pages can link to protocol.md#errors and the like.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"
# zope.interface Interfaces in annotations: show their names, not their reprs.
autodoc_type_aliases = {
    "IAddress": "twisted.internet.interfaces.IAddress",
    "IPlayerLink": "gameframe.IPlayerLink",
    "IReactorTime": "twisted.internet.interfaces.IReactorTime",
    # JSON trees: the alias name, not its expansion.
    "JSON": "gameframe.jsonpatch.JSON",
}

html_theme = "alabaster"
html_title = f"gameframe {release}"


# -- epytext docstrings → reST ------------------------------------------------
#
# gameframe's docstrings follow Twisted's epytext style (C{code}, L{Name},
# I{italic}, @param x: ...). Sphinx reads reST, so convert them as autodoc
# reads them: inline markup first, then the @fields into reST field lists.

_INLINE = {"C": "``{}``", "L": "``{}``", "I": "*{}*", "B": "**{}**", "U": "{}"}

_FIELD = re.compile(
    r"^(?P<indent>\s*)@(?P<tag>param|type|keyword|kwarg|ivar|cvar|var|raise|raises"
    r"|return|returns|rtype|note|see|since)(?:\s+(?P<arg>[^:]+?))?\s*:\s?(?P<text>.*)$"
)

_FIELD_NAMES = {
    "param": "param",
    "type": "type",
    "keyword": "keyword",
    "kwarg": "keyword",
    "ivar": "ivar",
    "cvar": "cvar",
    "var": "var",
    "raise": "raises",
    "raises": "raises",
    "return": "returns",
    "returns": "returns",
    "rtype": "rtype",
    "note": "note",
    "see": "see",
    "since": "since",
}


def _closing_brace(text: str, start: int) -> int:
    """The index of the brace closing the one at C{start}, or -1."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _inline(line: str) -> str:
    """Convert C{..}, L{..}, I{..}, B{..} and U{..} on one line (nested braces too)."""
    out: list[str] = []
    i = 0
    while i < len(line):
        char = line[i]
        if char in _INLINE and line[i + 1 : i + 2] == "{" and not (
            i and (line[i - 1].isalnum() or line[i - 1] == "_")
        ):
            end = _closing_brace(line, i + 1)
            if end > 0:
                body = line[i + 2 : end]
                if char == "L" and body.endswith(">") and "<" in body:
                    body = body[: body.index("<")].strip()  # L{text <target>}
                if char in "LC":
                    body = body.strip()
                rendered = _INLINE[char].format(body) if body else ""
                # reST inline markup must stand apart from words: escape the gap.
                if rendered and out and out[-1] and out[-1][-1].isalnum():
                    rendered = "\\ " + rendered
                if rendered and line[end + 1 : end + 2].isalnum():
                    rendered += "\\ "
                out.append(rendered)
                i = end + 1
                continue
        out.append(char)
        i += 1
    return "".join(out)


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def epytext_to_rest(lines: list[str]) -> list[str]:
    """Convert one docstring's lines from epytext to reST."""
    out: list[str] = []
    literal_indent: int | None = None  # inside a "::" literal block
    field_indent: int | None = None  # inside a field list
    for line in lines:
        stripped = line.strip()
        if literal_indent is not None:
            if not stripped or _indent_of(line) > literal_indent:
                out.append(line)
                continue
            literal_indent = None
        match = _FIELD.match(line)
        if match:
            if field_indent is None and out and out[-1].strip():
                out.append("")  # a field list needs a blank line before it
            tag = _FIELD_NAMES[match["tag"]]
            arg = f" {match['arg'].strip()}" if match["arg"] else ""
            line = f"{match['indent']}:{tag}{arg}: {_inline(match['text'])}".rstrip()
            field_indent = len(match["indent"])
        else:
            if (
                field_indent is not None
                and stripped
                and _indent_of(line) <= field_indent
            ):
                if out and out[-1].strip():
                    out.append("")  # and a blank line after it
                field_indent = None
            line = _inline(line)
        out.append(line)
        if stripped.endswith("::"):
            literal_indent = _indent_of(line)
    return out


class AutoInterface(SphinxDirective):
    """
    C{.. autointerface:: package.IName}: a zope.interface Interface, its
    attributes and its methods (autodoc reads Interfaces as if they were classes,
    and fails on them).
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        module_name, _, name = path.rpartition(".")
        interface = getattr(importlib.import_module(module_name), name)
        lines = [f".. py:class:: {path}", "", "   Bases: ``zope.interface.Interface``", ""]
        lines += _doc_lines(interface.__doc__, indent="   ")
        for member, description in interface.namesAndDescriptions():
            if hasattr(description, "getSignatureString"):
                signature = description.getSignatureString()
                lines += ["", f"   .. py:method:: {member}{signature}", ""]
            else:
                lines += ["", f"   .. py:attribute:: {member}", ""]
            lines += _doc_lines(description.__doc__, indent="      ")
        parent = nodes.Element()
        parent.document = self.state.document
        self.state.nested_parse(
            StringList(lines, source=f"interface {path}"), self.content_offset, parent
        )
        return parent.children


def _doc_lines(docstring: str | None, indent: str) -> list[str]:
    converted = epytext_to_rest(prepare_docstring(docstring or ""))
    return [indent + line if line else "" for line in converted]


def _process_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    lines[:] = epytext_to_rest(lines)


def _split_parameters(text: str) -> list[str]:
    """Split a signature's parameters on the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _process_signature(
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Leave private parameters (attrs' C{_held=...}) out of signatures."""
    if not signature or not signature.startswith("(") or "_" not in signature:
        return None
    parameters = _split_parameters(signature[1:-1])
    public = [p for p in parameters if not p.lstrip("*").startswith("_")]
    if len(public) == len(parameters):
        return None
    return "(" + ", ".join(public) + ")", return_annotation


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("autodoc-process-signature", _process_signature)
    app.add_directive("autointerface", AutoInterface)
    return {"parallel_read_safe": True}
