"""Reading spec YAML without the parts of YAML that only serve attacks: aliases and anchors (a 1 KB "billion laughs"
document expands to gigabytes), duplicate keys (the last silently wins), complex keys and language-specific tags.

libyaml's parser (PyYAML's C extension, when present) turns the text into events; this module composes them into
data itself, in a loop with an explicit stack, so the nesting depth, the number of values and the tags are checked as
the document is read and nothing is ever expanded. The YAML node tree is kept alongside, for the line numbers of
error messages. Every failure is a `SpecError` naming the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import Problem, SpecError, shorten
from .limits import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
# tags whose values are plain JSON types; timestamps, merge keys and '=' are kept as the text written
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
_TEXT_TAGS = {_TAG + t for t in ("timestamp", "merge", "value")}


def read_yaml(text: str, source: str | None = None) -> tuple[Any, yaml.Node | None]:
    """The one document in `text` as plain data, and its node tree (for line numbers)."""
    too_big = SpecError([Problem((), f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB")], source)
    if len(text) > MAX_DOCUMENT_BYTES:  # characters: no more than bytes, and cheap to count
        raise too_big
    try:
        if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
            raise too_big
    except UnicodeEncodeError as e:
        line = text.count("\n", 0, e.start) + 1
        raise SpecError([Problem((), "not valid text: a lone UTF-16 surrogate", line)], source) from None
    loader = _Loader(text)
    try:
        return _compose(loader, source)
    except SpecError:
        raise
    except yaml.reader.ReaderError as e:  # a character YAML does not allow, e.g. a control character
        line = text.count("\n", 0, max(e.position, 0)) + 1
        raise SpecError(
            [Problem((), f"not valid YAML: {e.reason} (character {e.character!r})", line)], source
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError([Problem((), f"not valid YAML: {e.problem or e.context}", line)], source) from None
    except (yaml.YAMLError, ValueError, TypeError, UnicodeError) as e:
        raise SpecError([Problem((), f"not valid YAML: {e}")], source) from None
    finally:
        loader.dispose()


def _refuse(message: str, event: yaml.Event, source: str | None) -> SpecError:
    return SpecError([Problem((), message, event.start_mark.line + 1)], source)


class _Open:
    """A mapping or list being read: its node, its data, and for mappings the key waiting for its value."""

    __slots__ = ("node", "data", "key_node", "key_data", "keys")

    def __init__(self, node: yaml.Node, data: Any):
        self.node, self.data, self.keys = node, data, set()
        self.key_node: yaml.Node | None = None
        self.key_data: Any = None


def _compose(loader: Any, source: str | None) -> tuple[Any, yaml.Node | None]:
    open_: list[_Open] = []
    root: tuple[Any, yaml.Node | None] = (None, None)
    documents = nodes = 0
    while (event := loader.get_event()) is not None:
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _refuse("expected one YAML document holding an LLMJob, found more", event, source)
            continue
        if isinstance(event, yaml.StreamStartEvent | yaml.StreamEndEvent | yaml.DocumentEndEvent):
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            done = open_.pop()
            value: tuple[Any, yaml.Node] | None = (done.data, done.node)
        elif isinstance(event, yaml.AliasEvent):
            raise _refuse(
                f"YAML aliases (*{event.anchor}) are not accepted in a spec; write the value out", event, source
            )
        else:
            if event.anchor is not None:
                raise _refuse(
                    f"YAML anchors (&{event.anchor}) are not accepted in a spec; write each value out", event, source
                )
            nodes += 1
            if nodes > MAX_NODES:
                raise _refuse(f"the document holds more than {MAX_NODES} values", event, source)
            if isinstance(event, yaml.ScalarEvent):
                value = _scalar(loader, event, source)
            else:
                if len(open_) >= MAX_DEPTH:
                    raise _refuse(f"nested deeper than {MAX_DEPTH} levels; a spec is never this deep", event, source)
                value = _start_collection(loader, event, open_, source)
        if value is not None:
            if not open_:
                root = value
            else:
                _attach(open_[-1], *value, source)
    return root


def _scalar(loader: Any, event: yaml.ScalarEvent, source: str | None) -> tuple[Any, yaml.Node]:
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    if tag in _TEXT_TAGS:
        return event.value, node
    if tag not in _SCALAR_TAGS:
        raise _refuse(f"the YAML tag {tag} is not accepted in a spec; use plain values", event, source)
    return loader.yaml_constructors[tag](loader, node), node


def _start_collection(loader: Any, event: yaml.Event, open_: list[_Open], source: str | None) -> None:
    mapping = isinstance(event, yaml.MappingStartEvent)
    kind = yaml.MappingNode if mapping else yaml.SequenceNode
    tag = event.tag if event.tag not in (None, "!") else loader.resolve(kind, None, event.implicit)
    if tag != _TAG + ("map" if mapping else "seq"):
        raise _refuse(f"the YAML tag {tag} is not accepted in a spec; use plain mappings and lists", event, source)
    node = kind(tag, [], event.start_mark, None, event.flow_style)
    open_.append(_Open(node, {} if mapping else []))
    return None


def _attach(parent: _Open, data: Any, node: yaml.Node, source: str | None) -> None:
    if isinstance(parent.data, list):
        parent.data.append(data)
        parent.node.value.append(node)
        return
    if parent.key_node is None:
        if not isinstance(node, yaml.ScalarNode) or isinstance(data, float | type(None)):
            line = node.start_mark.line + 1
            raise SpecError([Problem((), "a mapping key must be a string or an integer", line)], source)
        if data in parent.keys:
            line = node.start_mark.line + 1
            message = f"the key '{shorten(str(data), 80)}' appears twice in one mapping; keep one"
            raise SpecError([Problem((), message, line)], source)
        parent.keys.add(data)
        parent.key_node = node
        parent.key_data = data
        return
    parent.data[parent.key_data] = data
    parent.node.value.append((parent.key_node, node))
    parent.key_node = None
