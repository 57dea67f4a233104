"""The training config of a surrogate network (`task = "surrogate_net"`, eilab.ml.surrogate_net): apart from
the network so that configs load, and their errors name the field, without torch installed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from eilab.sim.config import Strict

Band = tuple[float, float]


def _check_band(name: str, b: Band) -> None:
    if not 0 <= b[0] < b[1]:
        raise ValueError(f"{name} = [{b[0]}, {b[1]}]: give [low, high] in Hz with 0 <= low < high")


class NetObjective(Strict):
    """The band-power objective on one population's rate."""

    population: str = Field("E", description="population whose rate is the signal")
    band_from_hz: Band = Field((8.0, 12.0), description="the starting rhythm's band (reported), Hz")
    band_to_hz: Band = Field((15.0, 30.0), description="the target band, Hz")
    total_hz: Band = Field((2.0, 100.0), description="the band whose power normalises the target band's, Hz")
    segment_ms: float = Field(250.0, gt=0, description="Welch segment length of the loss, ms")
    smooth_ms: float = Field(5.0, ge=0, description="reported `fundamental_hz`: the peak of the rate's spectrum "
                             "after Gaussian smoothing of this sigma, ms")
    loss_smooth_ms: float = Field(0.0, ge=0, description="the loss's band powers from the rate smoothed by a "
                                  "Gaussian of this sigma, ms (0: unsmoothed): it damps the harmonics of sharp "
                                  "volleys, which put a 10 Hz train's power into the target band as well")
    report_segment_ms: float = Field(500.0, gt=0, description="Welch segment length of the reported peaks and band "
                                     "powers (trajectory, before/after), ms: finer than the loss's, so that a "
                                     "10 Hz rhythm is not split between bins")

    @model_validator(mode="after")
    def _bands(self) -> NetObjective:
        for name in ("band_from_hz", "band_to_hz", "total_hz"):
            _check_band(name, getattr(self, name))
        return self


class NetOptimise(Strict):
    """Adam on the log weights, one surrogate-network simulation (BPTT through every bin) per step."""

    steps: int = Field(30, ge=0, le=100_000, description="Adam steps")
    lr: float = Field(0.1, gt=0, le=10, description="Adam learning rate on log weights")
    t_ms: float = Field(1000.0, gt=0, description="simulated time per step, ms")
    eval_t_ms: float = Field(2000.0, gt=0, description="simulated time of the before/after evaluations, ms")
    skip_ms: float = Field(200.0, ge=0, description="start of every simulation left out of the spectrum, ms")
    seed: int = Field(0, ge=0, lt=2**63, description="connectivity and drive seed; step k draws drive seeds "
                      "seed + k * draws ... seed + k * draws + draws - 1")
    draws: int = Field(1, ge=1, le=64, description="drive draws per Adam step: the gradient of their mean loss "
                       "(a gradient less tied to one draw, at draws x the cost)")
    threads: int = Field(1, ge=1, le=1024, description="CPU threads of torch")
    spikes: Literal["threshold", "probability"] = Field(
        "threshold", description="threshold: 0/1 spikes forward, surrogate gradient backward; probability: the spike "
        "probability itself is the spike (smooth, an expected-input network)")
    dampening: float = Field(1.0, gt=0, le=1, description="threshold spikes: the surrogate gradient times this "
                             "(Bellec et al. 2018); below 1 keeps BPTT through a strongly coupled circuit finite")
    min_weight_pa: float = Field(1.0, gt=0, description="weights are kept at or above this, pA (hh network)")
    max_weight_pa: float = Field(5000.0, gt=0, description="weights are kept at or below this, pA (hh network)")

    @property
    def eval_seed(self) -> int:
        """The drive seed of the before/after evaluations: one the descent never drew."""
        return self.seed + (self.steps + 1) * self.draws

    @model_validator(mode="after")
    def _times(self) -> NetOptimise:
        for name in ("t_ms", "eval_t_ms"):
            if getattr(self, name) <= self.skip_ms:
                raise ValueError(f"{name} ({getattr(self, name)}) must be longer than skip_ms ({self.skip_ms})")
        if self.min_weight_pa >= self.max_weight_pa:
            raise ValueError(f"min_weight_pa ({self.min_weight_pa}) must be below max_weight_pa ({self.max_weight_pa})")
        return self


HNN_TYPES = ("L2_pyramidal", "L5_pyramidal", "L2_basket", "L5_basket")


class HnnDrive(Strict):
    """An external drive of the HNN circuit, as hnn-core's Network.add_poisson_drive (one drive cell per target
    cell, each at rate_hz) or add_bursty_drive (n_drive_cells cells, bursts at rate_hz); weights in nS."""

    name: str = Field(min_length=1, description="drive name (hnn-core's)")
    kind: Literal["poisson", "bursty"]
    location: Literal["proximal", "distal"]
    rate_hz: float = Field(gt=0, description="poisson: events per second per drive cell; bursty: bursts per second")
    weights_ampa_ns: dict[str, float] = Field(default_factory=dict, description="per target cell type, nS")
    weights_nmda_ns: dict[str, float] = Field(default_factory=dict, description="per target cell type, nS")
    delays_ms: dict[str, float] = Field(default_factory=dict, description="synaptic delay per target cell type "
                                        "(ms; default 0.1)")
    tstart_ms: float = Field(0.0, ge=0, description="drive start, ms")
    burst_std_ms: float = Field(20.0, ge=0, description="bursty: jitter of the bursts, ms")
    numspikes: int = Field(2, ge=1, description="bursty: spikes per burst")
    spike_isi_ms: float = Field(10.0, ge=0, description="bursty: interval of the spikes within a burst, ms")
    n_drive_cells: int = Field(10, ge=1, description="bursty: drive cells")
    event_seed: int = Field(2, ge=0, description="hnn-core's event seed (the simulation's seed is added)")

    @model_validator(mode="after")
    def _types(self) -> HnnDrive:
        for field in ("weights_ampa_ns", "weights_nmda_ns", "delays_ms"):
            for t, v in getattr(self, field).items():
                if t not in HNN_TYPES:
                    raise ValueError(f"{field}.{t}: not a cell type of the HNN circuit ({', '.join(HNN_TYPES)})")
                if v < 0:
                    raise ValueError(f"{field}.{t} = {v}: give a value >= 0")
        if not self.weights_ampa_ns and not self.weights_nmda_ns:
            raise ValueError("give weights_ampa_ns or weights_nmda_ns (nS per target cell type)")
        return self


class HnnCircuit(Strict):
    """hnn-core's Jones 2009 circuit (neymotin_2020_model) on a mesh of pyramidal cells, with drives."""

    mesh_shape: tuple[int, int] = Field((10, 10), description="pyramidal cells per layer, (x, y)")
    weights_ns: dict[str, float] = Field(default_factory=dict, description="A_weight * gain of connections "
                                         "(SOURCE->TARGET/LOCATION_RECEPTOR), nS, in place of hnn-core's")
    drives: list[HnnDrive] = Field(min_length=1, description="external drives")
    dt_ms: float = Field(0.025, gt=0, description="NEURON's step of the before/after simulations, ms (the "
                         "surrogates' training data step)")
    min_weight_ns: float = Field(0.01, gt=0, description="trained strengths (A_weight * gain) are kept at or above "
                                 "this, nS")
    max_weight_ns: float = Field(200.0, gt=0, description="trained strengths are kept at or below this, nS")

    @model_validator(mode="after")
    def _mesh(self) -> HnnCircuit:
        if min(self.mesh_shape) < 1:
            raise ValueError(f"mesh_shape = {list(self.mesh_shape)}: give two positive counts")
        if self.min_weight_ns >= self.max_weight_ns:
            raise ValueError(f"min_weight_ns ({self.min_weight_ns}) must be below max_weight_ns ({self.max_weight_ns})")
        return self


class SurrogateNetConfig(Strict):
    task: Literal["surrogate_net"]
    network: str = Field("", description="eilab engine config (TOML) of the starting hh network")
    hnn: HnnCircuit | None = Field(None, description="the HNN circuit of hnn-core's cells, in place of network")
    surrogate: str = Field("", description="training directory of the surrogate (eilab train "
                                           "configs/train/surrogate_hh.toml); the default of every population")
    surrogates: dict[str, str] = Field(default_factory=dict, description="per population another surrogate")
    train: list[str] = Field(default_factory=list, description="projections whose weights are trained; "
                                                               "default all")
    objective: NetObjective = Field(default_factory=NetObjective)
    optimise: NetOptimise = Field(default_factory=NetOptimise)

    @model_validator(mode="after")
    def _network(self) -> SurrogateNetConfig:
        if bool(self.network) == (self.hnn is not None):
            raise ValueError("give either network (an engine config of hh cells) or [hnn] (the HNN circuit)")
        if self.hnn is None and not self.surrogate:
            raise ValueError("surrogate: give the training directory of the hh surrogate")
        if self.hnn is not None and not self.surrogate:
            missing = [t for t in HNN_TYPES if t not in self.surrogates]
            if missing:
                raise ValueError(f"surrogates: give a surrogate for {', '.join(missing)} (or a default surrogate)")
        return self
