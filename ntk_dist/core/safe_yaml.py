"""Reading a small YAML file from an untrusted source, with limits checked before parsing.

``yaml.safe_load`` executes no code, but it will expand aliases without bound (a
"billion laughs" file of a few hundred bytes becomes gigabytes), recurse once per
nesting level (20,000 brackets end in a RecursionError) and read a file of any size.
:func:`load_yaml` refuses, with the file's name, anything larger than
:data:`MAX_BYTES`, not UTF-8, nested deeper than :data:`MAX_DEPTH` (counted on the
token stream, before any recursion) or expanding to more than :data:`MAX_NODES` values
once aliases are followed (counted on the node graph, before any object is built).
Cost: one scan and one compose of the file, O(file size).
"""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000

_OPEN = (
    yaml.FlowSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.BlockMappingStartToken,
)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def load_yaml(path, *, what: str = "spec"):
    """The YAML document in ``path``, within the limits of the module docstring.

    Raises:
      ValueError: naming ``path``: missing, too large, not UTF-8, not YAML, too deep, or
        too many values after alias expansion.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(
            f"{path}: {size} bytes, more than the {MAX_BYTES} a {what} file may have; "
            "is this the right file?"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from None
    try:
        _check_depth(text, path)
        # yaml.safe_load is compose then construct: construct the checked node graph
        # rather than parse the text a third time.
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            _check_size(node, path)
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {_short(str(err))}") from None


def _check_depth(text: str, path: Path) -> None:
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(
                    f"{path}: nested more than {MAX_DEPTH} levels deep (line "
                    f"{token.start_mark.line + 1}); a spec needs a few"
                )
        elif isinstance(token, _CLOSE):
            depth -= 1


def _check_size(node, path: Path) -> None:
    """Count the values of the node graph with aliases expanded, memoised per node (an
    alias is a shared node), stopping as soon as the count passes MAX_NODES."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()
    stack = [(node, False)] if node is not None else []
    while stack:  # iterative post-order: a node after all of its children
        n, children_done = stack.pop()
        if id(n) in sizes:
            continue
        if children_done:
            open_ids.discard(id(n))
            sizes[id(n)] = 1 + sum(sizes[id(c)] for c in _children(n))
            if sizes[id(n)] > MAX_NODES:
                raise ValueError(
                    f"{path}: expands to more than {MAX_NODES} values once its aliases "
                    "(*name) are followed; write the values out, or use fewer aliases"
                )
            continue
        if id(n) in open_ids:
            raise ValueError(f"{path}: an alias (*name) refers to a value that contains it")
        open_ids.add(id(n))
        stack.append((n, True))
        for c in _children(n):
            if id(c) in open_ids:
                raise ValueError(f"{path}: an alias (*name) refers to a value that contains it")
            if id(c) not in sizes:
                stack.append((c, False))


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
