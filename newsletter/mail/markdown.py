"""The one Markdown set-up: CommonMark to HTML for emails and pages, and to readable plain text."""

from __future__ import annotations

import textwrap

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from markupsafe import Markup

TEXT_WIDTH = 72


def markdown() -> MarkdownIt:
    """CommonMark with raw HTML off (it is shown escaped), smart quotes and dashes on."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": True})
    md.enable(["replacements", "smartquotes"])
    return md


_MD = markdown()


def markdown_html(text: str) -> Markup:
    return Markup(_MD.render(text))


def smart_text(text: str) -> Markup:
    """One line of plain text, HTML-escaped, with typographic quotes and dashes."""
    return Markup(_MD.renderInline(text.replace("*", "\\*").replace("_", "\\_")))


def _inline_text(node: SyntaxTreeNode) -> str:
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline", "html_inline"):
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "link":
            label = _inline_text(child)
            href = str(child.attrs.get("href", ""))
            bare = href.removeprefix("mailto:")
            if not href or label in (href, bare):
                out.append(label.removeprefix("mailto:"))
            else:
                out.append(f"{label} ({bare})")
        elif kind == "image":
            out.append(f"[{_inline_text(child) or 'image'}]")
        else:  # em, strong, inline wrappers
            out.append(_inline_text(child))
    return "".join(out)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for piece in text.split("\n"):
        lines.extend(
            textwrap.wrap(piece, max(width, 20), break_long_words=False, break_on_hyphens=False)
            or [""]
        )
    return lines


def _blocks(nodes: list[SyntaxTreeNode], width: int, tight: bool = False) -> list[str]:
    lines: list[str] = []
    for node in nodes:
        block = _block(node, width)
        if lines and block and not tight:
            lines.append("")
        lines.extend(block)
    return lines


def _indent(first: str, rest: str, lines: list[str]) -> list[str]:
    return [(first if i == 0 else rest) + line if line else "" for i, line in enumerate(lines)]


def _block(node: SyntaxTreeNode, width: int) -> list[str]:
    kind = node.type
    if kind == "paragraph":
        return _wrap(_inline_text(node.children[0]) if node.children else "", width)
    if kind == "heading":
        title = _inline_text(node.children[0]) if node.children else ""
        return [*_wrap(title, width), ("=" if node.tag == "h1" else "-") * min(len(title), width)]
    if kind in ("bullet_list", "ordered_list"):
        items: list[str] = []
        start = int(node.attrs.get("start", 1) or 1)
        tight = all(
            p.nester_tokens is not None and p.nester_tokens.opening.hidden
            for item in node.children
            for p in item.children
            if p.type == "paragraph"
        )
        for i, item in enumerate(node.children):
            marker = "- " if kind == "bullet_list" else f"{start + i}. "
            body = _blocks(item.children, width - len(marker))
            if items and not tight:
                items.append("")
            items.extend(_indent(marker, " " * len(marker), body or [""]))
        return items
    if kind == "blockquote":
        return [f"> {line}".rstrip() for line in _blocks(node.children, width - 2)]
    if kind == "hr":
        return ["* * *"]
    if kind in ("fence", "code_block"):
        return ["    " + line for line in node.content.rstrip("\n").split("\n")]
    if node.children:
        return _blocks(node.children, width)
    return _wrap(node.content, width) if node.content else []


def markdown_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Markdown as readable plain text: wrapped, links as "label (URL)", lists kept."""
    tree = SyntaxTreeNode(_MD.parse(text))
    return "\n".join(_blocks(tree.children, width)).strip("\n") + "\n"
