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
    seed: int = Field(0, ge=0, lt=2**63, description="connectivity and drive seed; step k draws drive seed + k")
    threads: int = Field(1, ge=1, le=1024, description="CPU threads of torch")
    spikes: Literal["threshold", "probability"] = Field(
        "threshold", description="threshold: 0/1 spikes forward, surrogate gradient backward; probability: the spike "
        "probability itself is the spike (smooth, an expected-input network)")
    min_weight_pa: float = Field(1.0, gt=0, description="weights are kept at or above this, pA")
    max_weight_pa: float = Field(5000.0, gt=0, description="weights are kept at or below this, pA")

    @model_validator(mode="after")
    def _times(self) -> NetOptimise:
        for name in ("t_ms", "eval_t_ms"):
            if getattr(self, name) <= self.skip_ms:
                raise ValueError(f"{name} ({getattr(self, name)}) must be longer than skip_ms ({self.skip_ms})")
        if self.min_weight_pa >= self.max_weight_pa:
            raise ValueError(f"min_weight_pa ({self.min_weight_pa}) must be below max_weight_pa ({self.max_weight_pa})")
        return self


class SurrogateNetConfig(Strict):
    task: Literal["surrogate_net"]
    network: str = Field(description="eilab engine config (TOML) of the starting hh network")
    surrogate: str = Field(description="training directory of the hh surrogate (eilab train "
                                       "configs/train/surrogate_hh.toml)")
    surrogates: dict[str, str] = Field(default_factory=dict, description="per population another surrogate")
    train: list[str] = Field(default_factory=list, description="projections whose weights are trained; "
                                                               "default all")
    objective: NetObjective = Field(default_factory=NetObjective)
    optimise: NetOptimise = Field(default_factory=NetOptimise)
