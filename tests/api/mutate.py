"""A deterministic mutator of LLMJob specs, for tests/api/test_fuzz.py.

Each case starts from one of the example specs and applies one to three mutations, as an attacker or a careless user
would: types swapped, numbers huge, negative or not finite, keys dropped, renamed, added or written twice, deep
nesting, YAML aliases and anchors, long `needs` chains, hostile strings (shell, traversal, control characters). A case
is either an object (what the operator and a JSON body hand to `parse_job`) or YAML text (what `llmp` reads).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))

HOSTILE_STRINGS = [
    "$(rm -rf /)", "`id`", "; reboot", "../../etc/passwd", "../..", "/etc", "/etc/shadow", "/", "/proc/self/environ",
    "~/.aws/credentials", "file:///etc/hostname", "file://etc/x", "s3://", "s3:///key", "s3://A_B/x", "s3://b/../x",
    "http://user:pw@evil.example/v1", "ftp://evil.example/", "javascript:alert(1)", "%2e%2e/%2e%2e", "a\x00b", "\t",
    "line\nbreak", "\u202egnp.exe", "", " ", "-", "nan", "inf", "-inf", "1e999", "0x10", "yes", "null", "{{7*7}}",
    "AWS_SECRET_ACCESS_KEY", "x" * 300, "y" * 70_000, "Ünïcödé", "ghcr.io/org/Trainer:1", "ubuntu@sha256:00",
]  # fmt: skip
HOSTILE_NUMBERS = [
    -1, 0, -192, 10**30, -(10**30), 2**63, 2**53 + 1, 1e308, -1e308, float("nan"), float("inf"), float("-inf"), -0.0,
    0.5, 1e-300, 7,
]  # fmt: skip
OTHER_TYPES: list[Any] = [[], {}, [1, 2], {"a": 1}, "text", 3, 2.5, True, False, None, [[[]]], {"": None}]
KEY_NOISE = ["", "_", "x", "learning_rate", "api_key_env", "from", "__proto__", "Steps", "kind ", "spec"]


@dataclass
class Case:
    """One mutated spec: how it was made, and the object or YAML text to validate."""

    name: str
    data: Any = None
    text: str | None = None


def _paths(node: Any, loc: tuple = ()) -> Iterator[tuple]:
    """Every path of a (small) spec object, containers and leaves."""
    yield loc
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*loc, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*loc, i))


def _get(node: Any, loc: tuple) -> Any:
    for part in loc:
        node = node[part]
    return node


def _set(node: Any, loc: tuple, value: Any) -> Any:
    if not loc:
        return value
    _get(node, loc[:-1])[loc[-1]] = value
    return node


class Mutator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.bases = [yaml.safe_load(p.read_text()) for p in EXAMPLES]
        self.object_mutations: list[Callable[[Any], tuple[str, Any]]] = [
            self.swap_type,
            self.hostile_number,
            self.hostile_string,
            self.drop_key,
            self.rename_key,
            self.add_key,
            self.deep_nesting,
            self.needs_chain,
            self.duplicate_item,
            self.negate,
        ]
        self.text_mutations: list[Callable[[str], tuple[str, str]]] = [
            self.anchor_and_alias,
            self.alias_bomb,
            self.duplicate_line,
            self.yaml_tag,
            self.truncate,
            self.odd_character,
        ]

    def cases(self, count: int) -> Iterator[Case]:
        for _ in range(count):
            data = copy.deepcopy(self.rng.choice(self.bases))
            names = []
            for _ in range(self.rng.choice((1, 1, 2, 3))):
                name, data = self.rng.choice(self.object_mutations)(data)
                names.append(name)
                if name.startswith(("deep_nesting", "needs_chain")):
                    break  # the other mutations walk the object: keep the big ones last
            if self.rng.random() < 0.25:
                text = _dump(data)
                if text is not None:
                    name, text = self.rng.choice(self.text_mutations)(text)
                    yield Case("+".join([*names, name]), text=text)
                    continue
            yield Case("+".join(names), data=data)

    def _pick(self, data: Any, want: Callable[[Any], bool]) -> tuple | None:
        paths = [loc for loc in _paths(data) if want(_get(data, loc))]
        return self.rng.choice(paths) if paths else None

    def swap_type(self, data):
        loc = self._pick(data, lambda v: True)
        return "swap_type", _set(data, loc, copy.deepcopy(self.rng.choice(OTHER_TYPES)))

    def hostile_number(self, data):
        loc = self._pick(data, lambda v: isinstance(v, int | float) and not isinstance(v, bool)) or ()
        return "hostile_number", _set(data, loc, self.rng.choice(HOSTILE_NUMBERS)) if loc else data

    def negate(self, data):
        loc = self._pick(data, lambda v: isinstance(v, int | float) and not isinstance(v, bool))
        return "negate", _set(data, loc, -_get(data, loc) - 1) if loc else data

    def hostile_string(self, data):
        loc = self._pick(data, lambda v: isinstance(v, str))
        return "hostile_string", _set(data, loc, self.rng.choice(HOSTILE_STRINGS)) if loc else data

    def drop_key(self, data):
        loc = self._pick(data, lambda v: isinstance(v, dict) and v)
        if loc is None:
            return "drop_key", data
        mapping = _get(data, loc)
        del mapping[self.rng.choice(list(mapping))]
        return "drop_key", data

    def rename_key(self, data):
        loc = self._pick(data, lambda v: isinstance(v, dict) and v)
        if loc is None:
            return "rename_key", data
        mapping = _get(data, loc)
        key = self.rng.choice(list(mapping))
        new = self.rng.choice([str(key).upper(), f"{key}_", str(key)[:-1], self.rng.choice(KEY_NOISE)])
        mapping[new] = mapping.pop(key)
        return "rename_key", data

    def add_key(self, data):
        loc = self._pick(data, lambda v: isinstance(v, dict))
        if loc is None:
            return "add_key", data
        value = self.rng.choice([*OTHER_TYPES, *HOSTILE_STRINGS[:5]])
        _get(data, loc)[self.rng.choice(KEY_NOISE)] = copy.deepcopy(value)
        return "add_key", data

    def deep_nesting(self, data):
        depth = self.rng.choice((8, 20, 40, 200, 450, 900))
        value: Any = 1
        for _ in range(depth):
            value = [value] if self.rng.random() < 0.5 else {"a": value}
        loc = self.rng.choice([("spec", "model", "overrides"), ("status",), ("metadata", "labels"), ("spec", "x")])
        holder = data
        for part in loc[:-1]:
            holder = holder.setdefault(part, {}) if isinstance(holder, dict) else holder
        if isinstance(holder, dict):
            holder[loc[-1]] = value
        return f"deep_nesting_{depth}", data

    def needs_chain(self, data):
        n = self.rng.choice((2, 50, 101, 500, 3000))
        stages = [{"name": "s0", "kind": "data", "data": {"sources": [{"type": "stdlib"}]}}]
        stages += [{"name": f"s{i}", "kind": "tokenizer", "needs": [f"s{i - 1}"]} for i in range(1, n)]
        if self.rng.random() < 0.3:
            stages[0]["needs"] = [f"s{n - 1}"]  # close the chain into a cycle
        if isinstance(data, dict) and isinstance(data.get("spec"), dict):
            data["spec"]["stages"] = stages
        return f"needs_chain_{n}", data

    def duplicate_item(self, data):
        loc = self._pick(data, lambda v: isinstance(v, list) and v)
        if loc is None:
            return "duplicate_item", data
        items = _get(data, loc)
        items.append(copy.deepcopy(self.rng.choice(items)))
        return "duplicate_item", data

    def anchor_and_alias(self, text):
        lines = text.splitlines()
        scalars = [i for i, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")]
        if len(scalars) < 2:
            return "anchor_and_alias", text
        a, b = sorted(self.rng.sample(scalars, 2))
        key_a, _, value_a = lines[a].partition(": ")
        lines[a] = f"{key_a}: &v {value_a}"
        key_b, _, _ = lines[b].partition(": ")
        lines[b] = f"{key_b}: *v"
        return "anchor_and_alias", "\n".join(lines) + "\n"

    def alias_bomb(self, text):
        bomb = ["status:", "  conditions:", "  - a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        bomb += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
        return "alias_bomb", "\n".join(line for line in text.splitlines() if not line.startswith("status:")) + "\n" + (
            "\n".join(bomb) + "\n"
        )

    def duplicate_line(self, text):
        lines = text.splitlines()
        keyed = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("-")]
        if not keyed:
            return "duplicate_line", text
        i = self.rng.choice(keyed)
        lines.insert(i + 1, lines[i].split(":", 1)[0] + ": 1")
        return "duplicate_line", "\n".join(lines) + "\n"

    def yaml_tag(self, text):
        tag = self.rng.choice(["!!python/object/apply:os.system [id]", "!!binary aGk=", "!!set {a}", "!custom x"])
        lines = text.splitlines()
        scalars = [i for i, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")]
        if scalars:
            i = self.rng.choice(scalars)
            lines[i] = lines[i].partition(": ")[0] + ": " + tag
        return "yaml_tag", "\n".join(lines) + "\n"

    def odd_character(self, text):
        at = self.rng.randrange(len(text) + 1)
        odd = self.rng.choice(["\x00", "\x07", "\t", "\ufeff", "\udc80", "\u2028", "\r", "\x85", "\\", "'", '"', "%"])
        return "odd_character", text[:at] + odd + text[at:]

    def truncate(self, text):
        return "truncate", text[: self.rng.randrange(len(text) + 1)]


def _dump(data: Any) -> str | None:
    """Block-style YAML of a mutated object; None when it is too deep or too large to be worth writing as text."""
    try:
        text = json.dumps(data, allow_nan=True)
    except (ValueError, RecursionError):
        return None
    if len(text) > 50_000:
        return None
    try:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=False, width=200)
    except (yaml.YAMLError, RecursionError):
        return None
