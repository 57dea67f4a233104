"""Reading and windowing the surrogate's training data (issue 19, point 1): the trials.zarr stores that
`eilab.cluster.surrogate_gen` writes (one per chunk of trials), binned for the surrogate.

A bin of `bin_ms` (a whole number of steps) holds the weight arriving in its steps per synapse group
(pA), V at its end (mV) and whether the cell spiked in it. The targets follow Olah et al. (2022, eLife
11:e79535): V clipped at `v_clip_mv` (the spike shape is left to the spike output) and a spike flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from eilab.ml.config import Seeds, TrainSettings
from eilab.sim.config import ConfigError, Strict

DATA_FORMAT = "eilab-surrogate-data/1"


@dataclass(frozen=True)
class CellInput:
    """The input of one cell: per-synapse Poisson rates (Hz) and weights (pA; nS for hnn-core cells) of its E and
    I groups, and optionally fixed E input times (ms) instead of the E Poisson trains."""

    rate_e_hz: float
    w_e_pa: float
    rate_i_hz: float
    w_i_pa: float
    e_times_ms: tuple[float, ...] = field(default_factory=tuple)


@dataclass
class Trials:
    """Cells of one or more chunks, at the simulation step."""

    input: np.ndarray        # (cells, steps, groups) float32: weight arriving per step, pA
    v: np.ndarray            # (cells, steps) float32: V after each step, mV
    spikes: list[np.ndarray]  # per cell: spike times, ms
    dt_ms: float
    cells: list[dict[str, Any]]  # per cell: its protocol (rates, weights, input times)
    dendrites: np.ndarray | None = None  # (cells, steps, sections) float32: dendritic V after each step, mV

    @property
    def t_ms(self) -> float:
        return self.v.shape[1] * self.dt_ms


def open_trials(paths: list[str | Path], dendrites: bool = False) -> Trials:
    """The cells of the trials.zarr stores `paths`, in order (with `dendrites` their dendritic V too);
    ConfigError unless they share dt and length (and, with `dendrites`, hold it)."""
    import zarr

    parts = []
    for p in paths:
        try:
            root = zarr.open_group(Path(p), mode="r")
        except (FileNotFoundError, ValueError, OSError):
            raise ConfigError(f"{p}: not a surrogate data store (generate it with eilab train)") from None
        if root.attrs.get("format") != DATA_FORMAT:
            raise ConfigError(f"{p}: format {root.attrs.get('format')!r}, expected {DATA_FORMAT}")
        parts.append(root)
    dts = {float(r.attrs["protocol"]["dt_ms"]) for r in parts}
    lengths = {r["v"].shape[1] for r in parts}
    if len(dts) != 1 or len(lengths) != 1:
        raise ConfigError(f"data stores differ in dt ({sorted(dts)} ms) or length ({sorted(lengths)} steps)")
    spikes, cells = [], []
    for r in parts:
        t, c = r["spike_times_ms"][:], r["spike_cell"][:]
        n = r["v"].shape[0]
        spikes += [t[c == k] for k in range(n)]
        cells += r.attrs["protocol"]["cells"]
    if dendrites and not all("v_dendrites" in r for r in parts):
        raise ConfigError(f"{paths[0]}: chunks without dendritic V; data.dendrites needs chunks generated with it")
    return Trials(np.concatenate([r["input"][:] for r in parts]), np.concatenate([r["v"][:] for r in parts]),
                  spikes, dts.pop(), cells,
                  np.concatenate([r["v_dendrites"][:] for r in parts]) if dendrites and parts else None)


def bin_steps(bin_ms: float, dt_ms: float) -> int:
    """Steps per bin; ConfigError unless bin_ms is a whole multiple of dt."""
    g = bin_ms / dt_ms
    if g < 1 - 1e-9 or abs(g - round(g)) > 1e-6:
        raise ConfigError(f"data.bin_ms = {bin_ms}: must be a whole multiple of the time step ({dt_ms} ms)")
    return round(g)


def spike_bins(times_ms: np.ndarray, dt_ms: float, g: int, n_bins: int) -> np.ndarray:
    """(n_bins,) bool: the bins (of g steps) holding a spike; spikes are stored at the end of their step."""
    out = np.zeros(n_bins, bool)
    b = (np.rint(np.asarray(times_ms) / dt_ms).astype(np.int64) - 1) // g
    out[b[(b >= 0) & (b < n_bins)]] = True
    return out


def binned_dendrites(tr: Trials, bin_ms: float) -> np.ndarray | None:
    """Dendritic V at each bin's end (cells, bins, sections) mV; None without it."""
    if tr.dendrites is None:
        return None
    g = bin_steps(bin_ms, tr.dt_ms)
    return tr.dendrites[:, g - 1 : (tr.dendrites.shape[1] // g) * g : g]


def binned(tr: Trials, bin_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, v, s): input summed per bin (cells, bins, groups) pA, V at each bin's end (cells, bins) mV,
    spike flags (cells, bins) bool."""
    g = bin_steps(bin_ms, tr.dt_ms)
    n_cells, steps, groups = tr.input.shape
    n_bins = steps // g
    x = tr.input[:, : n_bins * g].reshape(n_cells, n_bins, g, groups).sum(axis=2)
    v = tr.v[:, g - 1 : n_bins * g : g]
    s = np.stack([spike_bins(t, tr.dt_ms, g, n_bins) for t in tr.spikes]) if n_cells else np.zeros((0, n_bins), bool)
    return x, v, s


@dataclass
class Scaling:
    """Input and voltage normalisation from the training split: x / x_scale, (min(V, v_clip) - v_mean) / v_sd,
    dendritic V (d - d_mean) / d_sd per section."""

    x_scale: np.ndarray  # (groups,) pA per bin
    v_clip: float
    v_mean: float
    v_sd: float
    d_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (sections,) mV
    d_sd: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (sections,) mV

    @classmethod
    def fit(cls, x: np.ndarray, v: np.ndarray, v_clip: float, d: np.ndarray | None = None) -> Scaling:
        vc = np.minimum(v, v_clip)
        sd = x.reshape(-1, x.shape[-1]).std(axis=0)
        flat = np.zeros((1, 0)) if d is None else d.reshape(-1, d.shape[-1]).astype(np.float64)
        return cls(np.where(sd > 0, sd, 1.0), v_clip, float(vc.mean()), float(max(vc.std(), 1e-6)),
                   flat.mean(axis=0), np.maximum(flat.std(axis=0), 1e-6))

    def dendrites(self, d: np.ndarray | None) -> np.ndarray | None:
        return None if d is None else ((d - self.d_mean) / self.d_sd).astype(np.float32)

    def inputs(self, x: np.ndarray) -> np.ndarray:
        return (x / self.x_scale).astype(np.float32)

    def target(self, v: np.ndarray) -> np.ndarray:
        return ((np.minimum(v, self.v_clip) - self.v_mean) / self.v_sd).astype(np.float32)

    def volts(self, z: np.ndarray) -> np.ndarray:
        return z * self.v_sd + self.v_mean

    def to_json(self) -> dict[str, Any]:
        return {"x_scale": self.x_scale.tolist(), "v_clip": self.v_clip, "v_mean": self.v_mean, "v_sd": self.v_sd,
                "d_mean": self.d_mean.tolist(), "d_sd": self.d_sd.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scaling:
        return cls(np.asarray(d["x_scale"]), d["v_clip"], d["v_mean"], d["v_sd"], np.asarray(d.get("d_mean", [])),
                   np.asarray(d.get("d_sd", [])))


def segments(n_cells: int, n_bins: int, length: int, first: int) -> np.ndarray:
    """(k, 2) (cell, first bin) of the non-overlapping segments of `length` bins from bin `first` of every cell."""
    starts = np.arange(first, n_bins - length + 1, length)
    return np.array([(c, s) for c in range(n_cells) for s in starts], np.int64).reshape(-1, 2)


# ---------------------------------------------------------------- the training config (task = "surrogate")
Range = tuple[float, float]


def _check_range(name: str, r: Range) -> None:
    if not 0 <= r[0] <= r[1]:
        raise ValueError(f"{name} = [{r[0]}, {r[1]}]: give [low, high] with 0 <= low <= high")


class SurrogateData(Strict):
    """The detailed cell's trials: chunks (one per seed, `cells_per_chunk` cells of `t_ms` each) with inputs
    drawn log-uniformly from the ranges (per synapse), and the held-out protocols (f-I curve, input spikes)."""

    cell: Literal["hh", "L5_pyramidal", "L2_pyramidal", "L5_basket", "L2_basket"] = Field(
        "hh", description="the detailed cell: eilab's hh model, or an hnn-core cell (the detailed extra; its weights "
                          "w_*_pa, fi_w_*_pa and psp_total_pa are then in nS)")
    seeds: Seeds = Field(description="chunk seeds of the training, validation and test trials")
    runs_dir: str = Field("", description="where the chunks are kept and reused; default <out>/runs")
    dendrites: bool = Field(False, description="hnn-core pyramidal cells: record V at the centre of every dendritic "
                                               "section too, a training target beside the somatic V (weighted by "
                                               "model.dendrite_weight; the surrogate's outputs stay V and spikes)")
    cells_per_chunk: int = Field(32, ge=1, le=4096, description="cells (trials) per chunk")
    t_ms: float = Field(2000.0, gt=0, description="length of a trial, ms")
    dt_ms: float = Field(0.1, gt=0, description="simulation step, ms")
    k_e: int = Field(40, ge=1, le=10_000, description="excitatory synapses per cell")
    k_i: int = Field(20, ge=1, le=10_000, description="inhibitory synapses per cell")
    rate_e_hz: Range = Field((2.0, 60.0), description="Poisson rate per E synapse, [low, high] Hz")
    w_e_pa: Range = Field((300.0, 2500.0), description="E weight, [low, high] pA")
    rate_i_hz: Range = Field((2.0, 40.0), description="Poisson rate per I synapse, [low, high] Hz")
    w_i_pa: Range = Field((20.0, 300.0), description="I weight, [low, high] pA")
    bin_ms: float = Field(0.5, gt=0, description="surrogate step, ms (a whole number of simulation steps)")
    v_clip_mv: float = Field(-50.0, description="V target clipped here, mV (spikes are the spike output's)")
    skip_ms: float = Field(50.0, ge=0, description="start of every trial left out of losses and scores, ms")
    segment_ms: float = Field(200.0, gt=0, description="training sequence length, ms")
    warmup_ms: float = Field(50.0, ge=0, description="start of every training sequence left out of the loss, ms")
    fi_rates_hz: list[float] = Field([5.0, 10.0, 20.0, 30.0, 40.0, 60.0], min_length=1,
                                     description="f-I curve: E rates per synapse, Hz (one held-out cell each)")
    fi_w_e_pa: float = Field(1000.0, ge=0, description="f-I curve: E weight, pA")
    fi_rate_i_hz: float = Field(10.0, ge=0, description="f-I curve: I rate per synapse, Hz")
    fi_w_i_pa: float = Field(100.0, ge=0, description="f-I curve: I weight, pA")
    fi_t_ms: float = Field(4000.0, gt=0, description="f-I curve: length of each cell's trial, ms")
    psp_total_pa: float = Field(1500.0, ge=0, description="input spikes: summed weight of one input volley, pA")
    psp_intervals_ms: list[float] = Field([2.0, 5.0, 10.0, 20.0], description="paired input spikes: intervals, ms")

    @model_validator(mode="after")
    def _ranges(self) -> SurrogateData:
        for name in ("rate_e_hz", "w_e_pa", "rate_i_hz", "w_i_pa"):
            _check_range(name, getattr(self, name))
        if self.warmup_ms >= self.segment_ms:
            raise ValueError(f"warmup_ms ({self.warmup_ms}) must be shorter than segment_ms ({self.segment_ms})")
        if not self.seeds.validation:
            raise ValueError("seeds.validation: the surrogate needs validation chunks (early stopping and the spike "
                             "threshold are chosen on them)")
        if self.dendrites and not self.cell.endswith("pyramidal"):
            raise ValueError(f"dendrites = true: the {self.cell} cell has no dendrites (only the pyramidal cells)")
        if self.skip_ms + self.segment_ms > self.t_ms:
            raise ValueError(f"t_ms ({self.t_ms}) holds no training sequence of segment_ms ({self.segment_ms}) "
                             f"after skip_ms ({self.skip_ms})")
        return self


class SurrogateModel(Strict):
    """TCN front end (causal dilated convolutions) and LSTM (eilab.ml.surrogate.SurrogateNet)."""

    channels: int = Field(32, ge=1, le=4096, description="filters per convolution")
    kernel: int = Field(5, ge=1, le=101, description="convolution width, bins")
    dilations: list[int] = Field([1, 2, 4, 8], min_length=1, description="dilation of each convolution")
    hidden: int = Field(64, ge=1, le=65_536, description="LSTM hidden units")
    layers: int = Field(1, ge=1, le=16, description="stacked LSTM layers")
    spike_weight: float = Field(1.0, ge=0, description="weight of the spike cross-entropy beside the V MSE")
    spike_pos_weight: float = Field(10.0, gt=0, description="weight of spike bins within the cross-entropy")
    dendrite_weight: float = Field(1.0, ge=0, description="with data.dendrites: weight of the dendritic V MSE "
                                                          "(scaled per section) beside the somatic V MSE")
    clip_grad_norm: float = Field(0.0, ge=0, description="gradients rescaled to at most this norm each step "
                                                           "(Pascanu et al. 2013); 0: off")


class SurrogateConfig(Strict):
    task: Literal["surrogate"]
    data: SurrogateData
    model: SurrogateModel = Field(default_factory=SurrogateModel)
    train: TrainSettings = Field(default_factory=TrainSettings)
