"""Arithmetic in configs: a string starting with '=' is an expression over `[vars]`.

    [vars]
    order = 2500
    [[populations]]
    n = "= 4 * order"

Allowed: numbers, names from [vars], + - * / // % **, parentheses, and the functions
sqrt exp log sin cos abs min max floor ceil round int. Nothing else is evaluated.
"""

from __future__ import annotations

import ast
import math
import operator
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


class ExpressionError(ValueError):
    pass


def evaluate(text: str, names: dict[str, Any], functions: dict[str, Callable[..., Any]] = FUNCTIONS) -> Any:
    """Evaluate an arithmetic expression with the given names (and pi, e).

    With ``functions=ARRAY_FUNCTIONS`` names may be numpy arrays (time-varying drive formulas).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"cannot parse {text!r}: {e.msg}") from None
    scope = {**CONSTANTS, **names}

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in scope:
                raise ExpressionError(f"unknown name {node.id!r} in {text!r} (define it under [vars])")
            return scope[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
            return functions[node.func.id](*[ev(a) for a in node.args])
        raise ExpressionError(f"not allowed in {text!r}: {ast.dump(node)[:60]}")

    try:
        return ev(tree)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as e:
        if isinstance(e, ExpressionError):
            raise
        raise ExpressionError(f"cannot evaluate {text!r}: {e}") from None


def _integral(v: Any) -> Any:
    """Expression results that are whole numbers become ints (so sizes can be computed)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def resolve_expressions(raw: dict) -> dict:
    """Return a copy of `raw` with every '= expr' string replaced by its value."""
    names = dict(raw.get("vars", {}))
    for k, v in list(names.items()):
        if isinstance(v, str) and v.startswith("="):
            names[k] = evaluate(v[1:], {n: x for n, x in names.items() if not isinstance(x, str)})

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
