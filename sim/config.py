"""The validated experiment description: what a TOML file in configs/ may say.

Units are in the field names (ms, mV, pA, pF, nS, Hz). Every field has a default except
population and projection essentials; unknown keys are errors. Numbers may be written as
expressions over `[vars]`, e.g. ``n = "= 4 * order"`` (see `expressions.py`).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eilab.sim.expressions import ExpressionError, abbreviate, resolve_expressions

NeuronModel = Literal["lif_delta", "lif_exp", "lif_cond_exp", "eif", "hh", "hh_cond_exp_traub", "rate"]


class ConfigError(ValueError):
    """A config problem, with the field or file named and the fix said."""


INT_LIMIT = 2**63
"""Integers in a config fit a signed 64-bit integer (the arrays that hold them)."""
MAX_STEPS = 2**53
"""Durations span at most this many time steps (whole numbers exactly representable as floats)."""
MAX_CONFIG_BYTES = 1 << 20
"""A config file is text of at most this size."""


class Strict(BaseModel):
    """Base of every config table: unknown keys, non-finite floats (inf, nan) and integers beyond
    64 bits are errors that name the field."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ints_fit(self) -> Strict:
        for name, value in self.__dict__.items():
            for v in value if isinstance(value, list | tuple) else (value,):
                if isinstance(v, int) and not -INT_LIMIT <= v < INT_LIMIT:
                    raise ValueError(f"{name} = {abbreviate(v)} does not fit a 64-bit integer (at most 2**63 - 1)")
        return self


# ---------------------------------------------------------------- neuron parameters
class LifDeltaParams(Strict):
    """LIF with delta synapses (NEST iaf_psc_delta): a spike of weight w moves V by w mV."""

    tau_m: float = Field(10.0, gt=0, description="membrane time constant, ms")
    C_m: float = Field(250.0, gt=0, description="capacitance, pF")
    E_L: float = Field(-70.0, description="resting potential, mV")
    V_th: float = Field(-55.0, description="threshold, mV")
    V_reset: float = Field(-70.0, description="reset, mV")
    t_ref: float = Field(2.0, ge=0, description="absolute refractory period, ms")
    I_e: float = Field(0.0, description="constant current, pA")
    integration: Literal["exact", "euler"] = Field(
        "exact", description="leak propagator: exact exp(-dt/tau_m) or forward Euler 1 - dt/tau_m"
    )


class LifExpParams(Strict):
    """LIF with exponential current synapses (NEST iaf_psc_exp), exact integration; w in pA."""

    tau_m: float = Field(10.0, gt=0)
    C_m: float = Field(250.0, gt=0)
    E_L: float = -70.0
    V_th: float = -55.0
    V_reset: float = -70.0
    t_ref: float = Field(2.0, ge=0)
    I_e: float = 0.0
    tau_syn_ex: float = Field(2.0, gt=0, description="ms")
    tau_syn_in: float = Field(2.0, gt=0, description="ms")
    tau_syn_x: float | None = Field(None, gt=0, description="time constant of the external drive's synaptic "
                                    "variable, ms (default: tau_syn_ex)")


class LifCondExpParams(Strict):
    """LIF with exponential conductances (NEST iaf_cond_exp); w in nS."""

    C_m: float = Field(250.0, gt=0)
    g_L: float = Field(16.6667, gt=0, description="leak conductance, nS")
    E_L: float = -70.0
    V_th: float = -55.0
    V_reset: float = -60.0
    t_ref: float = Field(2.0, ge=0)
    I_e: float = 0.0
    E_ex: float = 0.0
    E_in: float = -85.0
    tau_syn_ex: float = Field(0.2, gt=0)
    tau_syn_in: float = Field(2.0, gt=0)
    tau_syn_x: float | None = Field(None, gt=0, description="time constant of the external drive's synaptic "
                                    "variable, ms (default: tau_syn_ex)")
    integration: Literal["exponential_euler", "euler"] = Field(
        "exponential_euler", description="exponential Euler for V with the conductances' exact step means and "
        "exact decays, or forward Euler for V and the conductances (Brian2's COBA example; first order, cheaper)")


class EifParams(Strict):
    """Exponential integrate-and-fire (Fourcaud-Trocmé 2003) with exponential currents; w in pA."""

    C_m: float = Field(281.0, gt=0)
    g_L: float = Field(30.0, gt=0)
    E_L: float = -70.6
    V_T: float = -50.4
    Delta_T: float = Field(2.0, gt=0)
    V_peak: float = 0.0
    V_reset: float = -60.0
    t_ref: float = Field(2.0, ge=0)
    I_e: float = 0.0
    tau_syn_ex: float = Field(0.2, gt=0)
    tau_syn_in: float = Field(2.0, gt=0)
    tau_syn_x: float | None = Field(None, gt=0, description="time constant of the external drive's synaptic "
                                    "variable, ms (default: tau_syn_ex)")


class HHParams(Strict):
    """Hodgkin-Huxley squid axon (1952 parameters, NEST hh_psc_alpha units) with exp currents."""

    C_m: float = Field(100.0, gt=0)
    g_Na: float = Field(12000.0, ge=0)
    g_K: float = Field(3600.0, ge=0)
    g_L: float = Field(30.0, ge=0)
    E_Na: float = 50.0
    E_K: float = -77.0
    E_L: float = -54.402
    I_e: float = 0.0
    tau_syn_ex: float = Field(0.2, gt=0)
    tau_syn_in: float = Field(2.0, gt=0)
    tau_syn_x: float | None = Field(None, gt=0, description="time constant of the external drive's synaptic "
                                    "variable, ms (default: tau_syn_ex)")
    V_spike: float = Field(0.0, description="upward crossing that counts as a spike, mV")
    dt_sub: float = Field(0.01, gt=0, description="RK4 sub-step, ms (at most dt)")


class HHCondExpTraubParams(Strict):
    """Traub-Miles Hodgkin-Huxley point neuron with exponential conductances (Brette et al. 2007, benchmark 3;
    NEST hh_cond_exp_traub); defaults: Brian2's COBAHH example (20000 um^2 of membrane). w in nS."""

    C_m: float = Field(200.0, gt=0, description="capacitance, pF (1 uF/cm^2)")
    g_Na: float = Field(20000.0, ge=0, description="sodium conductance, nS (100 mS/cm^2)")
    g_K: float = Field(6000.0, ge=0, description="delayed-rectifier potassium conductance, nS (30 mS/cm^2)")
    g_L: float = Field(10.0, gt=0, description="leak conductance, nS (0.05 mS/cm^2)")
    E_Na: float = 50.0
    E_K: float = -90.0
    E_L: float = -60.0
    V_T: float = Field(-63.0, description="offset of the rate functions, mV")
    E_ex: float = 0.0
    E_in: float = -80.0
    I_e: float = 0.0
    tau_syn_ex: float = Field(5.0, gt=0, description="ms")
    tau_syn_in: float = Field(10.0, gt=0, description="ms")
    tau_syn_x: float | None = Field(None, gt=0, description="time constant of the external drive's synaptic "
                                    "variable, ms (default: tau_syn_ex)")
    V_spike: float = Field(-20.0, description="a spike: V above this while not refractory, mV")
    t_ref: float = Field(3.0, ge=0, description="time after a spike during which no spike counts, ms (V free)")
    integration: Literal["exponential_euler", "rk4"] = Field(
        "exponential_euler", description="exponential_euler (first order, as Brian2's COBAHH example) or rk4 "
        "(classical Runge-Kutta, fourth order; at dt 0.1 ms it needs n_sub >= 2, and n_sub = 4 is about as accurate "
        "as NEST's adaptive RKF45)")
    n_sub: int = Field(1, ge=1, le=1000, description="sub-steps per time step")


class RateParams(Strict):
    """Rate unit: tau_m dr/dt = -r + F(u), u = sum_b K_ab J_ab r_b + X (weight units x Hz), r in Hz.

    F: linear gain*u, rectified gain*[u - threshold]^+, sigmoid r_max / (1 + exp(-(gain*u - threshold))).
    """

    tau_m: float = Field(10.0, gt=0, description="ms")
    transfer: Literal["linear", "rectified", "sigmoid"] = "rectified"
    gain: float = Field(1.0, description="Hz per (weight unit x Hz); sigmoid: per (weight unit x Hz)")
    threshold: float = Field(0.0, description="input at which F starts (rectified) or is half-max (sigmoid)")
    r_max: float = Field(100.0, gt=0, description="sigmoid saturation, Hz")
    I_e: float = Field(0.0, description="constant input, weight units x Hz")


PARAMS: dict[str, type[Strict]] = {
    "rate": RateParams,
    "lif_delta": LifDeltaParams,
    "lif_exp": LifExpParams,
    "lif_cond_exp": LifCondExpParams,
    "eif": EifParams,
    "hh": HHParams,
    "hh_cond_exp_traub": HHCondExpTraubParams,
}


# ---------------------------------------------------------------- the experiment
class RunSpec(Strict):
    name: str = "run"
    t_ms: float = Field(1000.0, gt=0, description="simulated time, ms")
    dt_ms: float = Field(0.1, gt=0, description="time step, ms")
    seed: int = Field(1, ge=0, lt=2**63)
    drive_seed: int | None = Field(None, ge=0, lt=2**63, description="seed of the Poisson drive's streams (default: "
                                   "seed): the same network, initial state and other draws under another drive")
    progress: bool = True
    checkpoint_every_ms: float = Field(0.0, ge=0, description="engine state saved this often, ms; 0: never")
    exchange: Literal["allgather", "alltoall"] = Field(
        "allgather", description="spike exchange between ranks: every spike to every rank, or each spike "
        "only to the ranks holding its targets (pays off for local connectivity on many ranks)")
    ring_precision: Literal["float64", "float32"] = Field(
        "float64", description="spiking networks: the delay ring buffer that sums each neuron's arriving weights: "
        "float32 halves its memory and is faster once it leaves the cache (large networks), but rounds every summed "
        "input to float32 "
        "(about 1e-7 relative), so spikes differ from float64 runs after a while; ranks still agree bitwise")


class Normal(Strict):
    """A normally distributed initial value: {mean = ..., sd = ...}."""

    mean: float
    sd: float = Field(ge=0)


InitValue = float | tuple[float, float] | Normal


class Population(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    n: int = Field(gt=0, description="number of neurons")
    type: Literal["E", "I"]
    model: NeuronModel = "lif_delta"
    params: dict[str, Any] = Field(default_factory=dict)
    v_init: InitValue | None = Field(
        None, description="initial V, mV: a number, [low, high) uniform or {mean, sd}; default E_L (HH: -65)"
    )
    syn_init_ex: InitValue = Field(0.0, description="initial excitatory synaptic variable, pA or nS")
    syn_init_in: InitValue = Field(0.0, description="initial inhibitory synaptic variable (magnitude), pA or nS")
    spike_times: Literal["grid", "precise"] = Field(
        "grid", description="precise (lif_delta, lif_exp, eif): the threshold crossing is placed inside the step "
        "(closed form, root of the exact solution, root of the eif step) and refractoriness ends off the grid "
        "(NEST's *_ps models); spikes still reach their targets on the grid")
    zero_row_sum: bool = Field(
        False, description="each neuron's input weights (signed, over all projections onto it) sum to zero, as in "
        "Rajan & Abbott (2006): their mean is subtracted from every one (4 bytes per input synapse; signs may flip)")

    @model_validator(mode="after")
    def _check_params(self) -> Population:
        try:
            checked = PARAMS[self.model](**self.params)
        except ValidationError as e:
            raise ValueError(f"params for model {self.model!r}: {_first_error(e)}") from None
        object.__setattr__(self, "params", checked.model_dump())
        top = self.params.get("V_peak", self.params.get("V_th"))
        if top is not None and "V_reset" in self.params and self.params["V_reset"] >= top:
            raise ValueError(f"params.V_reset ({self.params['V_reset']}) must lie below the threshold ({top})")
        for name in ("v_init", "syn_init_ex", "syn_init_in"):
            value = getattr(self, name)
            if isinstance(value, tuple) and not value[0] <= value[1]:
                raise ValueError(f"{name} [low, high] needs low <= high")
        if self.spike_times == "precise" and (self.model not in ("lif_delta", "lif_exp", "eif")
                                              or self.params.get("integration") == "euler"):
            raise ValueError(f"spike_times 'precise' is for lif_delta (exact integration), lif_exp and eif, not "
                             f"{self.model!r}; use spike_times = 'grid'")
        if self.model == "lif_delta" and (self.syn_init_ex or self.syn_init_in):
            raise ValueError("syn_init_ex/syn_init_in need a model with synaptic variables (not lif_delta)")
        return self

    def typed_params(self) -> Strict:
        return PARAMS[self.model](**self.params)


class Plasticity(Strict):
    """Inhibitory STDP on a projection (Vogels et al. 2011; Akil et al. 2021; docs/models.md, section 6).

    vogels2011 (additive): traces jump by 1 and decay with tau_ms; pre spike: w += eta (x_post - alpha),
    post spike: w += eta x_pre, alpha = 2 rho0 tau. akil2021 (multiplicative): traces jump by 1/tau;
    pre: w += eta w (x_post - 2 rho0), post: w += eta w x_pre. w clipped to [w_min, w_max].
    Updates use the traces just before the step of the spike (spikes of the same step do not see
    each other); within a step postsynaptic updates come first. Spikes before start_ms leave the
    weights alone but still move the traces.
    """

    rule: Literal["vogels2011", "akil2021"] = "vogels2011"
    eta: float = Field(1e-3, gt=0, description="learning rate (weight units; dimensionless for akil2021)")
    tau_ms: float = Field(20.0, gt=0, description="trace time constant, ms")
    rho0_hz: float = Field(3.0, gt=0, description="target postsynaptic rate, Hz")
    w_min: float = Field(0.0, ge=0, description="lower weight bound (weight units)")
    w_max: float = Field(1e9, gt=0, description="upper weight bound (weight units)")
    snapshot_every_ms: float = Field(0.0, ge=0, description="weights stored this often; 0: at the end only")
    start_ms: float = Field(0.0, ge=0, description="weights change from this time on, ms (traces run from 0): "
                            "a static phase first, as in Vogels et al. (2011)")
    precision: Literal["float32", "float64"] = Field(
        "float32", description="weight storage per synapse: float32 (4 bytes) or float64 (8 bytes, exact updates)")


class Projection(Strict):
    name: str = ""
    pre: str
    post: str
    rule: Literal["fixed_indegree", "bernoulli", "ring"]
    k: int | None = Field(None, ge=0, description="in-degree (fixed_indegree)")
    p: float | None = Field(None, ge=0, le=1, description="probability (bernoulli; peak for ring)")
    radius: float = Field(0.5, gt=0, le=0.5, description="ring: cutoff distance, fraction of the ring")
    profile: Literal["box", "gaussian", "vonmises"] = "box"
    width: float = Field(0.1, gt=0, description="ring: gaussian sigma (fraction of ring) or vonmises kappa")
    weight: float = Field(ge=0, description="magnitude: mV (delta), pA (current), nS (conductance)")
    scale: Literal["none", "sqrt_n"] = Field("none", description="sqrt_n: J = weight / sqrt(N total)")
    weight_dist: Literal["fixed", "normal", "lognormal", "uniform"] = Field(
        "fixed", description="per-synapse weight magnitudes (sim/weights.py): fixed (one shared weight, no memory per "
        "synapse) or drawn with mean `weight` and standard deviation `weight_sd` (4 bytes per synapse)")
    weight_sd: float = Field(0.0, ge=0, description="standard deviation of the weight magnitude, weight units")
    negative: Literal["redraw", "clip", "allow"] = Field(
        "redraw", description="normal/uniform magnitudes below 0: redraw (truncated: Dale's sign kept), clip (set "
        "to 0) or allow (the synapse acts with the other sign)")
    delay_ms: float = Field(1.5, gt=0, description="delay, ms; normal delay_dist: the mean")
    delay_dist: Literal["fixed", "uniform", "normal"] = Field(
        "fixed", description="per-synapse delays on the grid (2 bytes per synapse): uniform whole steps in "
        "[delay_min_ms, delay_max_ms], or normal (delay_ms, delay_sd_ms) rounded to the grid and redrawn outside "
        "those bounds")
    delay_sd_ms: float = Field(0.0, ge=0, description="normal delay_dist: standard deviation, ms")
    delay_min_ms: float | None = Field(None, gt=0, description="shortest delay, ms (default: one step)")
    delay_max_ms: float | None = Field(None, gt=0, description="longest delay, ms (needed with a delay_dist)")
    autapses: bool = False
    multapses: bool = Field(
        True, description="fixed_indegree: draw the k inputs with replacement, repeated pairs adding their weights. "
        "Each entry of W is then w * Binomial(k, 1/n), variance k (1 - 1/n) w^2 per row instead of k (1 - k/n) w^2 "
        "for k distinct partners: a larger predicted bulk radius (analysis/spectra.py, shown by `eilab analyze`)")
    plasticity: Plasticity | None = None
    sign: Literal["auto", "+", "-"] = Field(
        "auto", description="rate networks: sign of the weights; auto: Dale's law (+ from E, - from I)")

    @model_validator(mode="after")
    def _check_rule(self) -> Projection:
        if not self.name:
            object.__setattr__(self, "name", f"{self.pre}{self.post}")
        if self.rule == "fixed_indegree" and self.k is None:
            raise ValueError("rule 'fixed_indegree' needs k (the in-degree)")
        if self.weight_dist != "fixed" and self.weight_sd == 0.0:
            raise ValueError(f"weight_dist {self.weight_dist!r} needs weight_sd > 0 (or weight_dist 'fixed')")
        if self.weight_dist == "lognormal" and self.weight <= 0.0:
            raise ValueError("weight_dist 'lognormal' needs weight (its mean) > 0")
        if self.delay_dist != "fixed" and self.delay_max_ms is None:
            raise ValueError(f"delay_dist {self.delay_dist!r} needs delay_max_ms (the longest delay)")
        if self.delay_dist == "normal" and self.delay_sd_ms == 0.0:
            raise ValueError("delay_dist 'normal' needs delay_sd_ms > 0 (or delay_dist 'fixed')")
        if self.rule in ("bernoulli", "ring") and self.p is None:
            object.__setattr__(self, "p", 1.0 if self.rule == "ring" else None)
            if self.p is None:
                raise ValueError("rule 'bernoulli' needs p (connection probability)")
        return self


class Drive(Strict):
    target: str = Field(description="population name")
    kind: Literal["poisson", "current", "spikes"]
    rate_hz: float = Field(0.0, ge=0, description="poisson: rate of each source, Hz")
    indegree: int = Field(1, ge=0, description="poisson: independent sources per neuron")
    weight: float = Field(0.0, ge=0, description="poisson/spikes: excitatory weight (model units)")
    amplitude: float = Field(0.0, description="current: constant part, pA")
    formula: str | None = Field(None, description="current: expression of t (ms), pA, added")
    file: str | None = Field(None, description="current: .npy/.txt/.csv samples, pA, added")
    file_dt_ms: float = Field(1.0, gt=0, description="current: sample spacing of `file`, ms")
    start_ms: float = Field(0.0, ge=0)
    stop_ms: float | None = Field(None, ge=0)
    times_ms: list[float] = Field(default_factory=list, description="spikes: input times, ms")


class Probe(Strict):
    population: str
    neurons: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0])


class Record(Strict):
    spikes: bool = True
    counts_bin_ms: float = Field(1.0, ge=0, description="bin width of spike counts, ms; 0 turns counts off")
    probes: list[Probe] = Field(default_factory=list)
    probe_every_ms: float | None = Field(None, gt=0, description="probe sampling interval; default dt")
    drive_counts: bool = Field(False, description="store per neuron and counts bin the events of its Poisson drive "
                               "(drive_counts, uint32; spike and current drives are the same for a whole population "
                               "and given by the config)")


class Matrix(Strict):
    """Rate networks: a full signed connectivity W[post, pre] (n_total x n_total, weight units, like a
    projection's signed weight: the transfer gain applies) read from a .npy file, scaled and added to the
    projections' W (with no projections it is the whole W). The run stores it (connectivity/W)."""

    file: str = Field(description=".npy file of a float (n_total, n_total) array, W[post, pre]")
    scale: float = Field(1.0, description="factor applied to every entry")


class Config(Strict):
    vars: dict[str, float] = Field(default_factory=dict)
    run: RunSpec = Field(default_factory=RunSpec)
    populations: list[Population] = Field(min_length=1)
    projections: list[Projection] = Field(default_factory=list)
    drive: list[Drive] = Field(default_factory=list)
    record: Record = Field(default_factory=Record)
    matrix: Matrix | None = Field(None, description="rate networks: W from a .npy file, added to the projections")

    @field_validator("populations")
    @classmethod
    def _unique_names(cls, pops: list[Population]) -> list[Population]:
        names = [p.name for p in pops]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"population names must be unique; repeated: {sorted(dup)}")
        return pops

    @model_validator(mode="after")
    def _check_refs(self, info: ValidationInfo) -> Config:
        pops = {p.name: p for p in self.populations}
        dt = self.run.dt_ms
        _on_grid(self.run.t_ms, dt, "run.t_ms")
        if self.run.checkpoint_every_ms > 0:
            _on_grid(self.run.checkpoint_every_ms, dt, "run.checkpoint_every_ms")
        for i, pr in enumerate(self.projections):
            for end in ("pre", "post"):
                if getattr(pr, end) not in pops:
                    raise ValueError(f"projections.{i}.{end}: no population named {getattr(pr, end)!r}")
            if pr.delay_dist != "normal":
                _on_grid(pr.delay_ms, dt, f"projections.{i}.delay_ms")
            if pr.delay_dist != "fixed":
                lo, hi = self.delay_range(pr)
                for key in ("delay_min_ms", "delay_max_ms"):
                    if getattr(pr, key) is not None:
                        _on_grid(getattr(pr, key), dt, f"projections.{i}.{key}")
                if not 1 <= lo <= hi:
                    raise ValueError(f"projections.{i}: delay_min_ms must be at least one step and at most "
                                     "delay_max_ms")
            if pr.plasticity is not None and pr.negative == "allow" and pr.weight_dist != "fixed":
                raise ValueError(f"projections.{i}.negative: 'allow' is not for plastic synapses (their weights "
                                 "stay in [w_min, w_max]); use 'redraw' or 'clip'")
            allowed = pops[pr.pre].n - (pr.pre == pr.post and not pr.autapses)
            if pr.rule == "fixed_indegree" and not pr.multapses and pr.k > allowed:
                raise ValueError(f"projections.{i}.k: {pr.k} distinct partners asked, only {allowed} available "
                                 "without multapses (allow multapses or lower k)")
        for i, pr in enumerate(self.projections):
            if pr.plasticity is None:
                continue
            if pops[pr.pre].type != "I":
                raise ValueError(f"projections.{i}.plasticity: inhibitory STDP needs an inhibitory presynaptic "
                                 f"population ({pr.pre!r} is {pops[pr.pre].type})")
            if pops[pr.pre].model == "rate":
                raise ValueError(f"projections.{i}.plasticity: rate networks have no spikes to learn from")
            w = pr.plasticity
            if not w.w_min <= pr.weight <= w.w_max:
                raise ValueError(f"projections.{i}.weight {pr.weight} lies outside [w_min, w_max] of its plasticity")
            if w.snapshot_every_ms:
                _on_grid(w.snapshot_every_ms, dt, f"projections.{i}.plasticity.snapshot_every_ms")
        names = [pr.name for pr in self.projections]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names must be unique: {names}")
        seen_poisson: set[str] = set()
        for i, d in enumerate(self.drive):
            if d.target not in pops:
                raise ValueError(f"drive.{i}.target: no population named {d.target!r}")
            if d.kind == "poisson":
                if d.target in seen_poisson:
                    raise ValueError(f"drive.{i}: one poisson drive per population ({d.target!r} has two)")
                seen_poisson.add(d.target)
            stored = bool(info.context and info.context.get("stored"))  # a run's copy: samples in the run
            if d.file is not None and not stored and not Path(d.file).is_file():
                raise ValueError(f"drive.{i}.file: {d.file!r} does not exist (give a path to .npy/.txt/.csv)")
        for i, pb in enumerate(self.record.probes):
            if pb.population not in pops:
                raise ValueError(f"record.probes.{i}.population: no population named {pb.population!r}")
            n = pops[pb.population].n
            bad = [k for k in pb.neurons if k >= n]
            if bad:
                raise ValueError(f"record.probes.{i}.neurons: {bad} out of range for {pb.population} (n={n})")
        if self.record.counts_bin_ms > 0:
            _on_grid(self.record.counts_bin_ms, dt, "record.counts_bin_ms")
        if self.record.drive_counts and (self.record.counts_bin_ms == 0 or self.is_rate_network):
            raise ValueError("record.drive_counts needs spiking neurons and counts (record.counts_bin_ms > 0): "
                             "drive events are binned like spike counts")
        if self.record.probe_every_ms is not None:
            _on_grid(self.record.probe_every_ms, dt, "record.probe_every_ms")
        rate = {p.model == "rate" for p in self.populations}
        if len(rate) > 1:
            raise ValueError("populations: rate units and spiking neurons cannot be mixed in one network")
        signed = [i for i, pr in enumerate(self.projections) if pr.sign != "auto"]
        if signed and True not in rate:
            raise ValueError(f"projections.{signed[0]}.sign: spiking networks follow Dale's law (the presynaptic "
                             "type gives the receptor); remove sign or set it to 'auto'")
        if self.matrix is not None:
            if True not in rate:
                raise ValueError("matrix: a connectivity matrix from a file is for rate networks (model = "
                                 "\"rate\"); spiking networks take projections")
            if not (info.context and info.context.get("stored")):  # a run's copy: the matrix is in the run
                load_matrix(self.matrix.file, self.n_total)
        for p in self.populations:
            if p.zero_row_sum and p.model in ("lif_cond_exp", "hh", "hh_cond_exp_traub"):
                raise ValueError(f"populations.{p.name}.zero_row_sum: conductances cannot turn negative; it is for "
                                 "current-based, delta and rate models")
            plastic_in = [pr.name for pr in self.projections if pr.post == p.name and pr.plasticity is not None]
            if p.zero_row_sum and plastic_in:
                raise ValueError(f"populations.{p.name}.zero_row_sum: its inputs {plastic_in} are plastic and would "
                                 "not keep the constraint; remove their plasticity or zero_row_sum")
            if p.spike_times == "precise" and p.params["t_ref"] < dt:
                raise ValueError(f"populations.{p.name}.params.t_ref must be at least run.dt_ms ({dt}) with "
                                 "spike_times 'precise' (one spike per step)")
            if p.model == "hh" and p.params["dt_sub"] > dt:
                raise ValueError(f"populations.{p.name}.params.dt_sub must be <= run.dt_ms ({dt})")
        return self

    @property
    def n_total(self) -> int:
        return sum(p.n for p in self.populations)

    @property
    def is_rate_network(self) -> bool:
        return self.populations[0].model == "rate"

    def sign_of(self, proj: Projection) -> float:
        """+1 or -1: the projection's `sign`, or with "auto" Dale's law (its presynaptic type)."""
        if proj.sign != "auto":
            return 1.0 if proj.sign == "+" else -1.0
        return 1.0 if next(p for p in self.populations if p.name == proj.pre).type == "E" else -1.0

    @property
    def max_delay_steps(self) -> int:
        """Length of the delay ring buffer, steps."""
        return max((self.delay_range(p)[1] for p in self.projections), default=1)

    def delay_range(self, proj: Projection) -> tuple[int, int]:
        """(shortest, longest) delay of a projection's synapses, steps."""
        if proj.delay_dist == "fixed":
            return (self.steps(proj.delay_ms),) * 2
        lo = self.steps(proj.delay_min_ms) if proj.delay_min_ms is not None else 1
        return lo, self.steps(proj.delay_max_ms)

    def own_weights(self, proj: Projection) -> bool:
        """Whether a projection keeps a weight per synapse: drawn weights, or inputs to a zero_row_sum population."""
        return proj.weight_dist != "fixed" or next(p for p in self.populations if p.name == proj.post).zero_row_sum

    def steps(self, ms: float) -> int:
        """A duration in ms as a whole number of steps (validated to lie on the grid)."""
        return round(ms / self.run.dt_ms)


def load_matrix(path: str, n: int) -> tuple[np.ndarray, str]:
    """(W, SHA-256 of the file) of `matrix.file`: a finite float (n, n) .npy array, W[post, pre] in weight
    units. Errors name the field and the file, never its content."""
    where = f"matrix.file {path!r}"
    try:
        data = Path(path).read_bytes()
        w = np.load(io.BytesIO(data), allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file (give the path to a .npy array of shape ({n}, {n}))") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it ({e.strerror or 'read error'}); give a readable .npy file") \
            from None
    except (ValueError, TypeError, EOFError):
        raise ConfigError(f"{where}: not a .npy array of numbers (save W with numpy.save)") from None
    if w.dtype.kind not in "iuf":
        raise ConfigError(f"{where}: holds {w.dtype.kind!r}-kind data, not numbers (save a float array)")
    if w.ndim != 2:
        raise ConfigError(f"{where}: a {w.ndim}-D array; W must be 2-D, shape ({n}, {n}) = (post, pre)")
    if w.shape != (n, n):
        raise ConfigError(f"{where}: shape {w.shape}, the network has {n} units; W needs shape ({n}, {n}) = "
                          "(post, pre)")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ConfigError(f"{where}: {int(np.sum(~np.isfinite(w)))} non-finite entries (inf or nan); every "
                          "weight must be a finite number")
    return w, hashlib.sha256(data).hexdigest()


def _on_grid(value: float, dt: float, field: str) -> None:
    steps = value / dt
    if not steps <= MAX_STEPS:
        raise ValueError(f"{field} = {value} ms spans more than 2**53 time steps of dt = {dt} ms (shorten it "
                         "or raise dt)")
    if steps < 1 - 1e-9:
        raise ValueError(f"{field} = {value} ms is below the time step dt = {dt} ms")
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        raise ValueError(f"{field} = {value} ms is not a multiple of dt = {dt} ms")


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"{loc}: {err['msg']} (got {abbreviate(err.get('input'))})" if loc else err["msg"]


def format_validation_error(e: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for err in e.errors():
        loc = re.sub(r"function-\w+\[[^,\]]*, (\w+)\]", r"\1", ".".join(str(x) for x in err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        got = "" if err["type"] in ("missing", "value_error") else f" (got {abbreviate(err.get('input'))})"
        lines.append(f"  {loc}: {msg}{got}" if loc else f"  {msg}")
    return "\n".join(lines)


# ---------------------------------------------------------------- loading
def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` to a raw config dict; list items by index or by name."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. run.t_ms=500")
    path, _, text = assignment.partition("=")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    keys = path.strip().split(".")
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        node = _child(node, key, ".".join(keys[: i + 1]), create=True)
    last = keys[-1]
    if not isinstance(node, dict | list):
        raise ConfigError(f"--set {path.strip()}: {'.'.join(keys[:-1])} is a value, not a table (set it as a whole)")
    if isinstance(node, list):
        node[_index(node, last, path)] = value
    else:
        node[last] = value


def _child(node: Any, key: str, where: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, key, where)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {where}: cannot descend into a value")
    if key not in node and create:
        node[key] = {}
    return node[key]


def _index(items: list, key: str, where: str) -> int:
    if key.isdecimal() and len(key) < 19 and int(key) < len(items):
        return int(key)
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name", f"{item.get('pre', '')}{item.get('post', '')}") == key:
            return i
    raise ConfigError(f"--set {where}: no list item {key!r} (use an index or a name)")


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    raw: dict | None = None,
) -> tuple[Config, dict]:
    """Read, override, resolve and validate a config. Returns (config, raw dict as given)."""
    source = str(path) if path is not None else "<dict>"
    if raw is None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: no such config file (give the path to a .toml file)")
        raw = _read_toml(p, source)
    try:
        raw = _deep_copy(raw)
        for a in overrides or []:
            apply_override(raw, a)
        resolved = resolve_expressions(raw)
    except ExpressionError as e:
        raise ConfigError(f"{source}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: tables or lists nested too deeply") from None
    try:
        cfg = Config.model_validate(resolved)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    return cfg, raw


def _read_toml(p: Path, source: str) -> dict:
    """The TOML table in file `p`, or a ConfigError that names the file (never its content)."""
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES >> 20} MiB; is it a config (a .toml file)?")
    try:
        return tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text; save the config as UTF-8 TOML") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read it ({e.strerror}); give a readable .toml file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None


def _deep_copy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x


def weight_scale(cfg: Config, proj: Projection) -> float:
    """Factor applied to a projection's weight: 1 or 1/sqrt(N total)."""
    return 1.0 / math.sqrt(cfg.n_total) if proj.scale == "sqrt_n" else 1.0


def file_weights(cfg: Config, matrix: np.ndarray | None = None) -> np.ndarray | None:
    """matrix.scale x the W[post, pre] of `matrix.file` (weight units), None without one; `matrix`: that W as
    stored in a run (default: read the file)."""
    if cfg.matrix is None:
        return None
    w = load_matrix(cfg.matrix.file, cfg.n_total)[0] if matrix is None else np.asarray(matrix, dtype=np.float64)
    return cfg.matrix.scale * w
