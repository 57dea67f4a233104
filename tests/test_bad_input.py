"""Bad input of every kind ends in a ConfigError (exit 2) naming the field or file, fast, without a
traceback, without echoing file content and without leaving a run directory (issue 16)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from conftest import CONFIGS, ROOT, small_network
from eilab.cluster.cli import main
from eilab.sim.budget import disk_bytes, memory_bytes, refusal, synapse_count
from eilab.sim.config import ConfigError, load_config
from eilab.sim.drive import DriveTable, load_samples
from eilab.sim.expressions import MAX_DEPTH, MAX_LENGTH, ExpressionError, evaluate
from eilab.sim.network import build_connectivity

GIB = float(1 << 30)


def write(tmp_path: Path, cfg: dict, name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(tomli_w.dumps(cfg))
    return p


def refused(raw: dict, *overrides: str) -> str:
    """The message of the ConfigError that loading `raw` with `overrides` must raise."""
    with pytest.raises(ConfigError) as e:
        load_config(raw=raw, overrides=list(overrides))
    return str(e.value)


# ---------------------------------------------------------------- expressions
@pytest.mark.parametrize("text", ["10**10**3", "2**(2**20)", "(-3)**(10**5)", "2.0**5000", "exp(1000)",
                                  "int(1e308) * 10", "10**308 * 10.0", "1e308 + 1e308", "0 * (-1)**0.5"])
def test_huge_or_complex_results_are_refused_at_once(text: str) -> None:
    """Powers are refused before they are computed (10**10**10 would take for ever: see the CLI test)."""
    t = time.perf_counter()
    with pytest.raises(ExpressionError):
        evaluate(text, {})
    assert time.perf_counter() - t < 0.5


def test_bounded_evaluator_keeps_ordinary_arithmetic() -> None:
    assert evaluate("2**10", {}) == 1024 and evaluate("int(0.1 * 4 * order)", {"order": 2500}) == 1000
    assert evaluate("2**1023", {}) == 2**1023 and evaluate("int(1e308)", {}) == int(1e308)
    assert evaluate("sqrt(2) * 2", {}) == math.sqrt(2) * 2 and evaluate("-x // 3 % 5", {"x": 7}) == (-7 // 3) % 5
    assert evaluate("+".join(["1"] * (MAX_DEPTH - 3)), {}) == MAX_DEPTH - 3


@pytest.mark.parametrize("name", ["s", "l", "d", "b"])
def test_vars_that_are_not_numbers_never_reach_arithmetic(name: str) -> None:
    names = {"s": "x" * 1000, "l": [1, 2], "d": {"a": 1}, "b": True}
    t = time.perf_counter()
    with pytest.raises(ExpressionError, match=f"'{name}' .* is not a number"):
        evaluate(f"{name} * 1000", names)
    assert time.perf_counter() - t < 0.5


@pytest.mark.parametrize("text", ["+".join(["1"] * 50000), "+".join(["1"] * (MAX_DEPTH + 5)),
                                  "-" * (MAX_DEPTH + 5) + "1", "(" * 300 + "1" + ")" * 300, "'a' * 3", "True + 1",
                                  "min(1, key=2)", "[1][0]", "__import__('os')"])
def test_long_deep_or_foreign_expressions_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError) as e:
        evaluate(text, {})
    assert len(str(e.value)) < 300  # the expression is cut, never echoed whole
    if len(text) > MAX_LENGTH:
        assert f"longer than {MAX_LENGTH}" in str(e.value)


def test_odd_expressions_print_no_parser_warnings() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for text in ["1 is 1", "'\\d' + 1", "1(2)"]:
            with pytest.raises(ExpressionError):
                evaluate(text, {})
    assert not seen, [str(w.message) for w in seen]


def test_expression_errors_in_a_config_name_the_field() -> None:
    raw = small_network()
    raw["vars"] = {"s": "abc", "big": "= 10**10**10"}
    assert "vars.big" in refused(raw)
    raw = small_network()
    raw["populations"][0]["n"] = "= 10**10**10"
    assert "populations.0.n" in refused(raw) and "too large" in refused(raw)


# ---------------------------------------------------------------- values that make no sense
NON_FINITE = [
    ("projections.EE.weight=inf", "projections.0.weight"),
    ("populations.E.params.V_th=nan", "V_th"),
    ("populations.E.params.V_th=inf", "V_th"),
    ("drive.0.rate_hz=inf", "drive.0.rate_hz"),
    ("run.t_ms=inf", "run.t_ms"),
    ("vars.x=nan", "vars.x"),
    ("populations.I.v_init={mean=-inf, sd=1.0}", "populations.1.v_init"),
    ("record.probe_every_ms=inf", "record.probe_every_ms"),
]


@pytest.mark.parametrize(("override", "field"), NON_FINITE, ids=[c[0] for c in NON_FINITE])
def test_non_finite_values_are_refused_with_the_field(override: str, field: str) -> None:
    message = refused(small_network(), override)
    assert field in message and "finite" in message


@pytest.mark.parametrize(("override", "field"), [("populations.E.n=100000000000000000000", "n"),
                                                  ("projections.EE.k=-100000000000000000000", "k"),
                                                  ("run.dt_ms=5e-324", "run.t_ms")])
def test_integers_and_step_counts_beyond_64_bits_are_refused(override: str, field: str) -> None:
    assert field in refused(small_network(), override)


def current_drive(formula: str, **extra: float) -> dict:
    raw = small_network(t_ms=100.0)
    raw["drive"].append({"target": "E", "kind": "current", "formula": formula, **extra})
    return raw


@pytest.mark.parametrize("formula", ["sqrt(t - 50)", "1 / t", "log(t)", "exp(10 * t)", "t ** 1000"])
def test_a_drive_formula_not_finite_during_the_run_is_refused_naming_the_drive(formula: str) -> None:
    cfg, _ = load_config(raw=current_drive(formula))
    with pytest.raises(ConfigError, match=r"drive\.2\.formula: .* not finite at t = "):
        DriveTable(cfg)


@pytest.mark.parametrize("rate", [False, True])
@pytest.mark.parametrize("drive", [{"formula": "log(t)"}, {"file": "samples.txt"}])
def test_a_bad_drive_is_refused_before_the_run_directory_exists(tmp_path: Path, capsys, drive: dict,
                                                                rate: bool) -> None:
    (tmp_path / "samples.txt").write_text("1.0\nnot a number\n")
    raw = current_drive("0")
    raw["drive"][-1] = {"target": "E", "kind": "current", **{k: str(tmp_path / v) if k == "file" else v
                                                             for k, v in drive.items()}}
    if rate:
        raw = {**raw, "projections": [], "drive": [raw["drive"][-1]], "record": {"counts_bin_ms": 1.0}}
        raw["populations"] = [{"name": "E", "n": 4, "type": "E", "model": "rate"}]
    out = tmp_path / "out"
    code, err = exit_code_and_error(capsys, "run", str(write(tmp_path, raw)), "--out", str(out), "--quiet")
    assert code == 2 and "drive" in err and not out.exists(), err


def test_a_drive_formula_is_checked_only_while_the_drive_is_on() -> None:
    cfg, _ = load_config(raw=current_drive("sqrt(t - 50)", start_ms=50.0))
    cur, _, _ = DriveTable(cfg).window(500, 100)  # t = 50 .. 59.9 ms
    assert np.array_equal(cur[0], np.sqrt(np.arange(500, 600) * 0.1 - 50))


# ---------------------------------------------------------------- files and --set
def exit_code_and_error(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`eilab ARGS` in this process (a traceback would fail the test): exit status and stderr."""
    code = main(list(args))
    return code, capsys.readouterr().err


def test_non_utf8_config_and_bad_set_paths_exit_2_naming_the_key(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("[run]\nname = 'caf\u00e9'\n".encode("latin-1"))
    good = write(tmp_path, small_network())
    cases = [((str(bad),), str(bad)), ((str(good), "--set", "vars=3"), "vars"),
             ((str(good), "--set", "run.t_ms.x=1"), "run.t_ms")]
    for args, named in cases:
        code, err = exit_code_and_error(capsys, "run", *args, "--out", str(tmp_path / "out"), "--quiet")
        assert code == 2 and named in err and not (tmp_path / "out").exists(), err


@pytest.mark.parametrize("key", ["populations.\u00b2.n", "populations.99.n", "vars.x.y", "run.seed.0"])
def test_set_paths_that_lead_nowhere_are_refused_naming_them(key: str) -> None:
    raw = small_network()
    raw["vars"] = {"x": 1.0}
    assert key.rpartition(".")[0] in refused(raw, f"{key}=3")


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".npy"])
def test_drive_file_errors_name_the_file_never_its_content(tmp_path: Path, suffix: str) -> None:
    f = tmp_path / f"secret{suffix}"
    f.write_text("root:x:0:0:the-secret-line:/root:/bin/bash\n")
    with pytest.raises(ConfigError) as e:
        load_samples(str(f))
    assert str(f) in str(e.value) and "one number per line" in str(e.value)
    assert "root" not in str(e.value).replace(str(tmp_path), "") and "secret-line" not in str(e.value)


def test_a_system_file_as_drive_file_is_refused_without_its_content() -> None:
    system = Path("/etc/passwd")
    if not system.is_file():
        pytest.skip("no /etc/passwd on this system")
    first = system.read_text(errors="replace").splitlines()[0]
    with pytest.raises(ConfigError) as e:
        load_samples(str(system))
    assert first not in str(e.value) and "/etc/passwd" in str(e.value)


# ---------------------------------------------------------------- sizes
def brunel(order: int, *overrides: str):
    return load_config(CONFIGS / "brunel.toml", [f"vars.order={order}", *overrides])[0]


def test_synapse_estimate_matches_closed_form_and_built_network() -> None:
    order = 100000  # Brunel (2000): C_E = 0.1 * 4N inputs from E and C_I = 0.1 N from I onto all 5N neurons
    cfg = brunel(order)
    assert sum(synapse_count(cfg, pr) for pr in cfg.projections) == (0.4 * order + 0.1 * order) * 5 * order
    small = load_config(raw=small_network())[0]
    built = build_connectivity(small, 0, small.n_total)
    for q, pr in enumerate(small.projections):
        start, end = built.rows(q)
        n = int((end - start).sum())
        expected = synapse_count(small, pr)
        if pr.rule == "fixed_indegree":
            assert n == expected
        else:  # binomial(n_pre * n_post, p): within 5 standard deviations
            assert abs(n - expected) < 5 * math.sqrt(expected * (1 - pr.p))
    assert memory_bytes(small)["synapses"] == 2 * sum(synapse_count(small, pr) for pr in small.projections)


def test_refusal_states_the_estimate_against_what_is_available() -> None:
    cfg = brunel(100000)
    assert memory_bytes(cfg)["synapses"] == 2 * (0.5 * 100000 * 5 * 100000)  # uint16 targets of 2.5e10 synapses
    need = sum(memory_bytes(cfg).values())
    message = refusal(cfg, need / 2, math.inf, Path("."))
    assert message is not None and f"{need / GIB:.3g} GiB of memory" in message and "--no-size-check" in message
    assert refusal(cfg, need * 1.01, math.inf, Path(".")) is None
    long = brunel(50, "run.t_ms=1e12")  # 2e11 count bins of 250 neurons: 1e14 bytes on disk
    assert disk_bytes(long)["counts"] == 2.0 * 2e11 * 250
    assert "free at" in refusal(long, math.inf, 1e12, Path("."))


@pytest.mark.parametrize("args", [("run", str(CONFIGS / "brunel.toml"), "--set", "vars.order=100000"),
                                  ("run", str(CONFIGS / "brunel.toml"), "--set", "run.t_ms=1e12"),
                                  ("run", str(CONFIGS / "brunel.toml"), "--set", "run.t_ms=inf"),
                                  ("bench", "brunel", "--order", "100000")])
def test_oversized_runs_exit_2_at_once_without_a_directory(tmp_path: Path, capsys, args: tuple[str, ...]) -> None:
    out = ("--out", str(tmp_path / "out")) if args[0] == "run" else ()
    t = time.perf_counter()
    code, err = exit_code_and_error(capsys, *args, *out)
    assert code == 2 and time.perf_counter() - t < 10 and not (tmp_path / "out").exists()
    assert "t_ms" in err if "inf" in args[-1] else "GiB" in err and "--no-size-check" in err


def test_hanging_expression_exits_2_within_seconds(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "eilab.cluster.cli", "run", str(CONFIGS / "brunel.toml"), "--out",
                          str(tmp_path / "out"), "--set", 'vars.order="= 10**10**10"'], capture_output=True,
                         text=True, cwd=ROOT, timeout=30)
    assert res.returncode == 2 and "vars.order" in res.stderr and not (tmp_path / "out").exists()


def test_size_check_flag_is_documented(capsys) -> None:
    for command in ("run", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--no-size-check" in capsys.readouterr().out
    assert "--no-size-check" in (ROOT / "README.md").read_text()
