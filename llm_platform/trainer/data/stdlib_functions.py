"""Instruction and preference data that every machine already has: the documented functions of this Python's
standard library, as (docstring -> function) pairs.

An SFT record asks for a function by its signature and the first paragraph of its docstring, and answers with the
function itself (docstring left out, so the answer is never a copy of the question):

    {"prompt": "Write a function `dedent(text)` that: Remove any common leading whitespace ...",
     "response": "def dedent(text):\n    ..."}

A preference record adds a `rejected` answer that looks right and is wrong: the same signature with one deliberate
bug (a comparison turned round, a boolean flipped, a number off by one, `and`/`or` exchanged), or, for a function with
no such spot, the body of another standard-library function with as many parameters, its parameters renamed.
Chosen and rejected are both written by `ast.unparse`, so formatting never tells them apart; only the code does.

Deterministic (sorted files, choices by content hash), bounded (`max_chars`, `max_records`), deduplicated (by the
function's code), and split by a hash of the function's module and name: `test` records are never in `train`, so
an evaluation on them measures functions no training stage has seen.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .sources import stdlib_root

Split = Literal["train", "test"]
Kind = Literal["instruction", "preference"]

TEST_FRACTION = 0.1  # share of functions held out for evaluation
MAX_DOC_CHARS = 300  # the docstring's first paragraph, cut at a word boundary
MAX_CODE_CHARS = 600  # longer functions are left out: a small model's context holds prompt and answer
MIN_BODY_STATEMENTS = 1
# folders whose code is tests, demos or tools rather than the library
SKIPPED_PARTS = {"site-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__"}


@dataclass(frozen=True)
class Function:
    """One documented top-level function of the standard library."""

    module: str  # e.g. "textwrap"
    name: str
    signature: str  # "dedent(text)"
    summary: str  # the docstring's first paragraph, on one line
    node: ast.FunctionDef  # without its docstring
    code: str  # `node` as source

    @property
    def split(self) -> Split:
        return "test" if _unit(f"split:{self.module}.{self.name}") < TEST_FRACTION else "train"

    def prompt(self) -> str:
        return f"Write a Python function `{self.signature}` that: {self.summary}"


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The library's own modules, sorted (tests, demos and installed packages left out)."""
    root = root or stdlib_root()
    return [p for p in sorted(root.rglob("*.py")) if p.is_file() and not SKIPPED_PARTS & set(p.relative_to(root).parts)]


def functions_in(source: str, module: str) -> Iterator[Function]:
    """The public, documented, undecorated top-level functions of one module's source that fit `MAX_CODE_CHARS`."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a file for another Python version, or not text
        return
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_") or node.decorator_list:
            continue
        doc = ast.get_docstring(node)
        if not doc or len(node.body) <= MIN_BODY_STATEMENTS:
            continue
        bare = copy.copy(node)  # shares the statements, which nothing here changes in place
        bare.body = node.body[1:]  # the docstring goes in the prompt, not the answer
        signature = f"{node.name}({ast.unparse(node.args)})"
        function = Function(module, node.name, signature, summary_of(doc), bare, ast.unparse(bare))
        if function.summary and len(function.code) <= MAX_CODE_CHARS:
            yield function


def summary_of(doc: str) -> str:
    """The docstring's first paragraph on one line, at most `MAX_DOC_CHARS` (cut at a word)."""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    if len(paragraph) <= MAX_DOC_CHARS:
        return paragraph
    return paragraph[:MAX_DOC_CHARS].rsplit(" ", 1)[0] + " ..."


def stdlib_functions(root: Path | None = None) -> list[Function]:
    """Every usable function of the library, once each: a function whose code repeats an earlier one's is dropped."""
    return list(_functions_under(root or stdlib_root()))


@functools.lru_cache(maxsize=2)
def _functions_under(root: Path) -> tuple[Function, ...]:
    seen: set[str] = set()
    out = []
    for path in stdlib_files(root):
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for function in functions_in(path.read_text(encoding="utf-8", errors="replace"), module):
            key = hashlib.sha256(function.code.encode()).hexdigest()
            if key not in seen:
                seen.add(key)
                out.append(function)
    return tuple(out)


def records(kind: Kind, split: Split, max_records: int | None = None, root: Path | None = None) -> list[dict]:
    """The `split`'s SFT records (`instruction`: prompt, response) or DPO records (`preference`: prompt, chosen,
    rejected), in library order, at most `max_records`. Preference records whose wrong answer could not be made
    (no donor body, or the mutation left the code unchanged) are left out."""
    functions = stdlib_functions(root)
    donors: dict[tuple, list[Function]] = {}
    for function in functions:
        donors.setdefault(_shape(function.node.args), []).append(function)
    out = []
    for function in functions:
        if function.split != split:
            continue
        if kind == "instruction":
            out.append({"prompt": function.prompt(), "response": function.code})
        else:
            wrong = rejected_code(function, donors.get(_shape(function.node.args), []))
            if wrong is None:
                continue
            out.append({"prompt": function.prompt(), "chosen": function.code, "rejected": wrong})
        if max_records is not None and len(out) >= max_records:
            break
    return out


def rejected_code(function: Function, pool: list[Function]) -> str | None:
    """A plausible but wrong version of `function`: one bug planted at a spot chosen by hash, else the body of a
    function of `pool` with parameters of the same shape, under this signature. None when neither can be made."""
    mutated = plant_bug(function.node, seed=f"bug:{function.module}.{function.name}")
    if mutated is not None:
        return mutated
    donor = pick_donor(function, pool)
    if donor is None:
        return None
    code = ast.unparse(transplant(function.node, donor.node))
    return code if code != function.code else None


# one-token bugs: each maps an AST node type to the wrong one a tired programmer might write
_COMPARE_FLIPS = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_FLIPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}


def _bug_sites(function: ast.FunctionDef) -> list[tuple[ast.AST, str]]:
    """Every spot of the function's body (never its signature) where one of the bugs fits: (node, what to do)."""
    sites = []
    for node in (node for statement in function.body for node in ast.walk(statement)):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _COMPARE_FLIPS:
            sites.append((node, "compare"))
        elif isinstance(node, ast.BoolOp):
            sites.append((node, "boolop"))
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_FLIPS:
            sites.append((node, "binop"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            sites.append((node, "bool"))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            sites.append((node, "int"))
    return sites


def plant_bug(node: ast.FunctionDef, seed: str) -> str | None:
    """The function's code with one bug at the site `seed` picks; None when it has no site."""
    tree = copy.deepcopy(node)
    sites = _bug_sites(tree)
    if not sites:
        return None
    site, what = sites[int(_unit(seed) * len(sites))]
    if what == "compare":
        site.ops[0] = _COMPARE_FLIPS[type(site.ops[0])]()
    elif what == "boolop":
        site.op = ast.Or() if isinstance(site.op, ast.And) else ast.And()
    elif what == "binop":
        site.op = _BINOP_FLIPS[type(site.op)]()
    elif what == "bool":
        site.value = not site.value
    else:
        site.value = site.value + 1
    return ast.unparse(tree)


def parameters(args: ast.arguments) -> tuple[list[str], list[str], str | None, str | None]:
    """(positional, keyword-only, *args, **kwargs) names: two functions with the same shape can swap bodies."""
    positional = [a.arg for a in args.posonlyargs + args.args]
    return positional, [a.arg for a in args.kwonlyargs], _name(args.vararg), _name(args.kwarg)


def _name(arg: ast.arg | None) -> str | None:
    return arg.arg if arg is not None else None


def _shape(args: ast.arguments) -> tuple:
    positional, keyword, star, stars = parameters(args)
    return len(positional), len(keyword), star is None, stars is None


def pick_donor(function: Function, pool: list[Function]) -> Function | None:
    """Another function of `pool` whose parameters have the same shape (by hash, so the choice is stable), or None."""
    shape = _shape(function.node.args)
    candidates = [f for f in pool if f.code != function.code and _shape(f.node.args) == shape]
    if not candidates:
        return None
    return candidates[int(_unit(f"donor:{function.module}.{function.name}") * len(candidates))]


def transplant(recipient: ast.FunctionDef, donor: ast.FunctionDef) -> ast.FunctionDef:
    """`recipient`'s signature over `donor`'s body, the donor's parameter names replaced by the recipient's."""
    renames = {}
    for theirs, ours in zip(parameters(donor.args), parameters(recipient.args), strict=True):
        if isinstance(theirs, list):
            renames.update(zip(theirs, ours, strict=True))
        elif theirs is not None:
            renames[theirs] = ours

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.Name:
            return ast.copy_location(ast.Name(renames.get(node.id, node.id), node.ctx), node)

    body = [Rename().visit(statement) for statement in copy.deepcopy(donor.body)]
    out = copy.deepcopy(recipient)
    out.body = body
    return out


def _unit(key: str) -> float:
    """A number in [0, 1) fixed by `key`: the same choice on every machine and every run."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
