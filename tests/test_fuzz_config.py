"""Fuzzing (hypothesis) of configs, `--set` values, config files and expressions: every input is
either accepted or refused with a ConfigError (exit 2) within seconds, never a traceback, a hang or
a run directory left behind (issue 16)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import tomli_w
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import small_network
from eilab.sim.budget import refusal
from eilab.sim.config import ConfigError, load_config
from eilab.sim.drive import DriveTable

FAST = settings(deadline=3000, database=None, suppress_health_check=[HealthCheck.too_slow])
MAX_MESSAGE = 4000
"""Characters of an error message: the input is named, never echoed at length."""
MAX_DRIVE_CHECK_STEPS = 10**6
"""Accepted configs longer than this are not built here (the formula check runs over every step)."""

KEYS = [
    "run.t_ms", "run.dt_ms", "run.seed", "run.name", "run.checkpoint_every_ms", "run.exchange",
    "populations.E.n", "populations.I.n", "populations.0.model", "populations.E.params.V_th",
    "populations.I.params.tau_m", "populations.E.v_init", "populations.I.syn_init_ex", "populations.E.type",
    "projections.EE.k", "projections.IE.p", "projections.EI.rule", "projections.II.delay_ms",
    "projections.EE.weight", "projections.IE.plasticity", "projections.IE.plasticity.snapshot_every_ms",
    "projections.EE.radius", "projections.0.multapses", "projections.EE.scale",
    "drive.0.rate_hz", "drive.1.indegree", "drive.0.kind", "drive.0.formula", "drive.0.file", "drive.1.times_ms",
    "drive.0.stop_ms", "record.counts_bin_ms", "record.probe_every_ms", "record.probes.0.neurons",
    "record.probes.0.population", "record.spikes", "vars", "vars.x", "vars.order", "populations", "run",
    "populations.\u00b2.n", "populations.99.n", "drive.-1.rate_hz", "run.t_ms.x", "vars.x.y", "",
]
NAMES = ["x", "order", "t", "pi", "e", "s", "nope", "sqrt", "__import__"]
NASTY = ["10**10**10", "2**(2**31)", "int(1e308)", "1e308 * 10", "s * 100000000", "(-1)**0.5", "0/0",
         "+".join(["1"] * 5000), "(" * 300 + "1" + ")" * 300, "'a' * 3", "[1, 2]", "min()", "exp(1e6)",
         "log(0)", "x.__class__", "lambda: 1", "1 if 1 else 2"]


def expressions() -> st.SearchStrategy[str]:
    """Arithmetic over numbers, names and functions, including ones that overflow or hang naively."""
    atoms = st.one_of(st.integers(-10**400, 10**400).map(str), st.floats().map(repr), st.sampled_from(NAMES),
                      st.sampled_from(NASTY).map(lambda s: f"({s})"))

    def combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binop = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), inner)
        call = st.tuples(st.sampled_from(["sqrt", "exp", "log", "int", "round", "min", "max", "heaviside", "abs"]),
                         st.lists(inner, max_size=3))
        return st.one_of(binop.map(lambda b: f"({b[0]} {b[1]} {b[2]})"), inner.map(lambda s: f"-{s}"),
                         call.map(lambda c: f"{c[0]}({', '.join(c[1])})"))

    return st.recursive(atoms, combine, max_leaves=8)


def values() -> st.SearchStrategy[Any]:
    """Anything a TOML file can hold, mostly numbers, with the numbers and strings that break naive code."""
    numbers = st.one_of(st.integers(-100, 10**4), st.floats(-1e4, 1e4), st.integers(-2**80, 2**80), st.floats(),
                        st.sampled_from([0, -1, 1, 0.1, 10**12, 2**63, 1e12, 1e-320, math.inf, -math.inf, math.nan]))
    scalars = st.one_of(numbers, numbers, numbers, expressions().map(lambda s: f"= {s}"), st.booleans(),
                        st.text(max_size=10))
    return st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), c, max_size=2)),
                        max_leaves=3)


PATHS = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.sampled_from(KEYS), st.text(max_size=12))


def put(raw: dict, path: str, value: Any) -> None:
    """Set raw[path] (dotted; list items by name or index), making tables on the way as needed."""
    keys = path.split(".")
    node: Any = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list) and node:
            named = [i for i, x in enumerate(node) if isinstance(x, dict) and x.get("name") == key]
            index = named[0] if named else int(key) % len(node) if key.isdecimal() and len(key) < 19 else 0
        elif isinstance(node, dict):
            index = key
            if not last and not isinstance(node.get(key), dict | list):
                node[key] = {}
        else:
            return
        if last:
            node[index] = value
        else:
            node = node[index]


def base() -> dict:
    raw = small_network(t_ms=20.0)
    raw["vars"] = {"x": 2.0, "order": 10}
    raw["projections"][0]["name"] = "EE"
    raw["projections"][1]["name"] = "EI"
    raw["projections"][2]["name"] = "IE"
    raw["projections"][3]["name"] = "II"
    return raw


def check(raw: dict | None = None, overrides: list[str] | None = None, path: Path | None = None) -> None:
    """Load, validate, size-check and (if small) tabulate the drive: only ConfigErrors, with short messages."""
    try:
        cfg, _ = load_config(path, overrides, raw=raw)
        memory = psutil.virtual_memory().available
        if refusal(cfg, memory, math.inf, Path(".")) is None and cfg.steps(cfg.run.t_ms) <= MAX_DRIVE_CHECK_STEPS:
            DriveTable(cfg)
    except ConfigError as e:
        assert "Traceback" not in str(e) and len(str(e)) < MAX_MESSAGE, str(e)[:500]


@settings(FAST, max_examples=800)
@given(st.lists(st.tuples(PATHS, values()), min_size=1, max_size=2))
def test_generated_configs_are_accepted_or_refused(changes: list[tuple[str, Any]]) -> None:
    raw = base()
    for path, value in changes:
        put(raw, path, value)
    check(raw=raw)


SIZE_KEYS = ["populations.E.n", "populations.I.n", "projections.EE.k", "projections.IE.p", "projections.EI.k",
             "projections.II.delay_ms", "run.t_ms", "run.dt_ms", "run.checkpoint_every_ms", "record.counts_bin_ms",
             "record.probe_every_ms", "drive.0.indegree", "drive.0.rate_hz", "vars.order"]
SIZES = st.one_of(st.integers(0, 2**64), st.floats(0, 1e20), st.floats(1e-6, 1e3), st.sampled_from([0.1, 0.2, 1.0]))


@settings(FAST, max_examples=500)
@given(st.lists(st.tuples(st.sampled_from(SIZE_KEYS), SIZES), min_size=1, max_size=4))
def test_generated_sizes_are_accepted_or_refused_by_the_size_check(changes: list[tuple[str, Any]]) -> None:
    raw = base()
    raw["drive"].append({"target": "I", "kind": "current", "formula": "100 * sin(t / x) + order"})
    for path, value in changes:
        put(raw, path, value)
    check(raw=raw)


SET_TEXT = st.one_of(
    st.text(max_size=30), values().map(lambda v: tomli_w.dumps({"v": v}).partition("=")[2].strip() or "x"),
    st.sampled_from(["inf", "nan", "-inf", "1e400", "[1, 2]", "{a = 1}", '"= 10**10**10"', '"= s * 10"', "[[[[1]]]]",
                     "[" * 2000 + "]" * 2000, "1979-05-27", "true", "0x10", '"\\u0000"', "3\nx = 1"]),
    expressions().map(lambda s: f'"= {s}"'),
)


@settings(FAST, max_examples=800)
@given(st.lists(st.tuples(PATHS, SET_TEXT), min_size=1, max_size=3))
def test_generated_set_values_are_accepted_or_refused(sets: list[tuple[str, str]]) -> None:
    check(raw=base(), overrides=[f"{path}={text}" for path, text in sets])


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("fuzz") / "small.toml"
    p.write_text(tomli_w.dumps(base()))
    return p


@settings(FAST, max_examples=200)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 values().map(lambda v: tomli_w.dumps({**base(), "run": v} if isinstance(v, dict) else base())
                              .encode())))
def test_generated_config_files_are_accepted_or_refused(config_file: Path, content: bytes) -> None:
    path = config_file.parent / "generated.toml"
    path.write_bytes(content)
    check(path=path)


def refused_here(config_file: Path, assignment: str) -> bool:
    """Whether loading (and size-checking) the config with this --set fails in this process."""
    try:
        cfg, _ = load_config(config_file, [assignment])
        return refusal(cfg, psutil.virtual_memory().available, math.inf, Path(".")) is not None
    except ConfigError:
        return True


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much])
@given(path=st.sampled_from(KEYS), text=SET_TEXT.filter(lambda s: "\x00" not in s))
def test_eilab_run_refuses_generated_set_values_with_exit_2(config_file: Path, path: str, text: str) -> None:
    assume(refused_here(config_file, f"{path}={text}"))  # bad values only: accepted ones would run the network
    out = config_file.parent / "out"
    res = subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "run", str(config_file), "--out", str(out),
                          "--quiet", "--set", f"{path}={text}"], capture_output=True, text=True, timeout=120,
                         cwd=config_file.parent)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.startswith("eilab: error: ") and len(res.stderr) < MAX_MESSAGE
    assert not out.exists() and not (config_file.parent / "runs").exists()
