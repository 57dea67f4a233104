"""Arithmetic in configs: a string starting with '=' is an expression over `[vars]`.

    [vars]
    order = 2500
    [[populations]]
    n = "= 4 * order"

Allowed: numbers, names from [vars], + - * / // % **, parentheses, and the functions
sqrt exp log sin cos abs min max floor ceil round int. Nothing else is evaluated.
The evaluator is bounded: an expression has at most MAX_LENGTH characters and MAX_DEPTH
levels of nesting, names must stand for numbers, and every intermediate value must be a
finite number (whole numbers within float range), so no input can hang it or exhaust memory.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "sin": math.sin, "cos": math.cos,
    "abs": abs, "min": min, "max": max, "floor": math.floor, "ceil": math.ceil, "round": round,
    "int": int,
}
ARRAY_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "abs": np.abs,
    "min": np.minimum, "max": np.maximum, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "heaviside": lambda x: np.heaviside(x, 1.0),
}
CONSTANTS = {"pi": math.pi, "e": math.e}
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
MAX_LENGTH = 1000
"""Characters in one expression."""
MAX_DEPTH = 100
"""Levels of nesting in one expression (a chain of n additions counts n levels)."""
MAX_BITS = 1024
"""Whole-number results and powers stay below 2**MAX_BITS, the float range."""


class ExpressionError(ValueError):
    pass


def abbreviate(value: Any, limit: int = 60) -> str:
    """repr of a value given in a config, cut to `limit` characters (errors never echo long input)."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def is_number(v: Any) -> bool:
    """A real number (not a bool, string or container); arrays count for drive formulas of t."""
    return isinstance(v, int | float | np.ndarray | np.number) and not isinstance(v, bool | np.bool_)


def _depth(tree: ast.AST) -> int:
    """Deepest nesting of the syntax tree, without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _checked(v: Any, text: str) -> Any:
    """`v` if it is a finite number (arrays of t are checked by their user, over the run)."""
    if isinstance(v, np.ndarray):
        return v
    if not is_number(v):
        raise ExpressionError(f"{abbreviate(text)} gives {type(v).__name__}, not a number")
    if (isinstance(v, int) and abs(v) >= 2**MAX_BITS) or (isinstance(v, float) and not math.isfinite(v)):
        raise ExpressionError(f"{abbreviate(text)} leaves the range of finite numbers (about 1.8e308)")
    return v


def _power(base: Any, exp: Any, text: str) -> Any:
    """base ** exp, refused before computing a whole number beyond float range."""
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1 \
            and exp * math.log2(abs(base)) >= MAX_BITS:
        raise ExpressionError(f"{abbreviate(text)}: power too large (results must stay below about 1.8e308)")
    return base**exp


def evaluate(text: str, names: dict[str, Any], functions: dict[str, Callable[..., Any]] = FUNCTIONS) -> Any:
    """Evaluate an arithmetic expression with the given names (and pi, e).

    With ``functions=ARRAY_FUNCTIONS`` names may be numpy arrays (time-varying drive formulas).
    """
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression {abbreviate(str(text))} is longer than {MAX_LENGTH} characters")
    try:
        with warnings.catch_warnings():  # the parser's hints on odd input (SyntaxWarning) would print
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as e:
        raise ExpressionError(f"cannot parse {abbreviate(text)}: {getattr(e, 'msg', e)}") from None
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"{abbreviate(text)} is nested more than {MAX_DEPTH} levels deep (use [vars] for parts)")
    scope = {**CONSTANTS, **names}

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and is_number(node.value):
            return _checked(node.value, text)
        if isinstance(node, ast.Name):
            if node.id not in scope:
                raise ExpressionError(f"unknown name {node.id!r} in {abbreviate(text)} (define it under [vars])")
            if not is_number(scope[node.id]):
                raise ExpressionError(f"{node.id!r} in {abbreviate(text)} is not a number (vars hold numbers only)")
            return scope[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                return _checked(_power(left, right, text), text)
            return _checked(_BINOPS[type(node.op)](left, right), text)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions \
                and not node.keywords:
            return _checked(functions[node.func.id](*[ev(a) for a in node.args]), text)
        raise ExpressionError(f"not allowed in {abbreviate(text)}: {ast.dump(node)[:60]}")

    try:
        with np.errstate(all="ignore"):
            return ev(tree)
    except ExpressionError:
        raise
    except (ArithmeticError, ValueError, TypeError) as e:
        raise ExpressionError(f"cannot evaluate {abbreviate(text)}: {e}") from None


def _integral(v: Any) -> Any:
    """Expression results that are whole numbers become ints (so sizes can be computed)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def resolve_expressions(raw: dict) -> dict:
    """Return a copy of `raw` with every '= expr' string replaced by its value."""
    given = raw.get("vars", {})
    if not isinstance(given, dict):
        raise ExpressionError(f"vars: must be a table of numbers, e.g. [vars] order = 2500 "
                              f"(got {type(given).__name__})")
    names = dict(given)
    for k, v in list(names.items()):
        if isinstance(v, str) and v.startswith("="):
            try:
                names[k] = evaluate(v[1:], {n: x for n, x in names.items() if not isinstance(x, str)})
            except ExpressionError as e:
                raise ExpressionError(f"vars.{k}: {e}") from None

    def walk(x: Any, where: str) -> Any:
        if isinstance(x, dict):
            return {k: walk(v, f"{where}.{k}" if where else k) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v, f"{where}.{i}") for i, v in enumerate(x)]
        if isinstance(x, str) and x.startswith("="):
            try:
                return _integral(evaluate(x[1:], names))
            except ExpressionError as e:
                raise ExpressionError(f"{where}: {e}") from None
        return x

    out = walk(raw, "")
    out["vars"] = names if "vars" in raw else {}
    return out
