"""Reading series files with exact line numbers: YAML nodes, front matter, forbidden characters."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from yaml.reader import ReaderError

# Characters no article text may hold: C0/C1 controls other than tab and newline (they break
# subjects and the database refuses NUL) and lone surrogates (not encodable as UTF-8).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
FENCE = re.compile(r"^---[ \t]*$")
MAX_LENGTHS = {"slug": 100, "title": 200}  # the database columns' sizes


def line_at(text: str, index: int) -> int:
    """The 1-based line of text[index], counting only newlines (as editors do).

    PyYAML's own line numbers also count U+0085, U+2028 and U+2029 as line breaks.
    """
    return text.count("\n", 0, max(index, 0)) + 1


def node_line(node: yaml.Node, text: str) -> int:
    return line_at(text, node.start_mark.index)


def read(path: Path, errors: list[str]) -> str | None:
    """The file as text (UTF-8, a BOM allowed, any line endings as "\n"), or None with an error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        errors.append(f"{path}:1: can't be read ({exc.strerror or type(exc).__name__})")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + data.count(b"\r", 0, exc.start)
        line -= data.count(b"\r\n", 0, exc.start)
        errors.append(
            f"{path}:{line + 1}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save the file as UTF-8"
        )
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def control_problem(value: str) -> str | None:
    found = CONTROL.search(value)
    if found is None:
        return None
    return f"contains a control character (U+{ord(found.group()):04X}); remove it"


def yaml_error(path: Path, exc: yaml.YAMLError, text: str, offset: int = 0) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line = line_at(text, mark.index) + offset
    elif isinstance(exc, ReaderError):
        line = line_at(text, exc.position) + offset
    else:
        line = 1 + offset
    if isinstance(exc, ReaderError):
        problem = f"character U+{exc.character:04X} is not allowed in YAML"
    else:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{path}:{line}: not valid YAML: {problem}"


def mapping(
    path: Path, text: str, allowed: tuple[str, ...], errors: list[str], offset: int = 0
) -> tuple[dict[str, yaml.Node], dict[str, int]] | None:
    """Compose YAML text into {key: value node} and {key: line}, reporting bad/unknown keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        errors.append(yaml_error(path, exc, text, offset))
        return None
    except RecursionError:
        errors.append(f"{path}:{1 + offset}: not valid YAML: lists or mappings nested too deeply")
        return None
    if root is None:
        errors.append(f"{path}:{1 + offset}: is empty; expected keys {', '.join(allowed)}")
        return None
    if not isinstance(root, yaml.MappingNode):
        errors.append(
            f"{path}:{node_line(root, text) + offset}: expected a mapping of keys to values"
        )
        return None
    values: dict[str, yaml.Node] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        line = node_line(key_node, text) + offset
        if not isinstance(key, str) or key not in allowed:
            errors.append(f"{path}:{line}: unknown key {key!r} (allowed: {', '.join(allowed)})")
            continue
        if key in values:
            errors.append(f"{path}:{line}: key {key!r} given twice (first on line {lines[key]})")
            continue
        values[key] = value_node
        lines[key] = line
    return values, lines


def scalar(node: yaml.Node) -> str | None:
    """The raw text of a scalar node (so `send_time: 9:30` is not read as sexagesimal 570)."""
    if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
        return str(node.value)
    return None


def string(
    path: Path, key: str, nodes: dict[str, yaml.Node], lines: dict[str, int], errors: list[str]
) -> str | None:
    node = nodes.get(key)
    if node is None:
        return None
    value = scalar(node)
    if value is None or not value.strip():
        errors.append(f"{path}:{lines[key]}: {key} must be non-empty text")
        return None
    control = control_problem(value)
    if control is not None:
        errors.append(f"{path}:{lines[key]}: {key} {control}")
        return None
    limit = MAX_LENGTHS.get(key)
    if limit is not None and len(value.strip()) > limit:
        errors.append(f"{path}:{lines[key]}: {key} is longer than {limit} characters")
        return None
    return " ".join(value.split()) if key != "description" else value.strip()


def split_front_matter(path: Path, text: str, errors: list[str]) -> tuple[str, str, int] | None:
    """(front matter, body, line number of the body's first line) or None with an error."""
    lines = text.split("\n")  # newlines only: YAML and editors don't break at \f or \x1c
    if not lines or not FENCE.match(lines[0]):
        errors.append(
            f"{path}:1: missing front matter: start the file with a '---' line, "
            "then title: and summary:, then '---'"
        )
        return None
    for index in range(1, len(lines)):
        if FENCE.match(lines[index]):
            front = "".join(line + "\n" for line in lines[1:index])
            return front, "\n".join(lines[index + 1 :]), index + 2
    errors.append(f"{path}:1: front matter is not closed: add a '---' line after it")
    return None
