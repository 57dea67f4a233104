"""The training config of `eilab train` (TOML; examples in configs/train/): which runs, which windows,
which model, how to train. Unknown keys and bad values raise ConfigError naming the field.

[data] names a simulation config (a bundled name such as "ring600", or a path), `--set`-style
overrides applied to every run, and the seeds of the training, validation and test runs (disjoint; the
test runs are held out whole). Without validation seeds the last `val_fraction` of every training run
is the validation split (after a gap of k + horizon bins).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from eilab.sim.config import MAX_CONFIG_BYTES, ConfigError, Strict, format_validation_error


class Seeds(Strict):
    train: list[int] = Field(min_length=1, description="seeds of the training runs")
    validation: list[int] = Field(default_factory=list, description="seeds of the validation runs")
    test: list[int] = Field(min_length=1, description="seeds of the held-out test runs")

    @model_validator(mode="after")
    def _disjoint(self) -> Seeds:
        groups = {"train": self.train, "validation": self.validation, "test": self.test}
        for name, seeds in groups.items():
            if len(set(seeds)) != len(seeds):
                raise ValueError(f"{name} lists a seed twice")
            if any(s < 0 for s in seeds):
                raise ValueError(f"{name}: seeds are >= 0")
        shared = (set(self.train) & set(self.validation)) | (set(self.train) & set(self.test)) \
            | (set(self.validation) & set(self.test))
        if shared:
            raise ValueError(f"seeds {sorted(shared)} are in two splits; a run belongs to one split only")
        return self


class Data(Strict):
    config: str = Field(description="simulation config: a bundled name (eilab configs) or a .toml path")
    set: list[str] = Field(default_factory=list, description="overrides, as eilab run --set KEY=VALUE")
    seeds: Seeds
    runs_dir: str = Field("", description="where the runs are kept and reused; default <out>/runs")
    bin_ms: float = Field(1.0, gt=0, description="bin width, ms: a whole multiple of the runs' counts bin")
    k: int = Field(10, ge=1, le=10_000, description="input bins per window")
    horizon: int = Field(1, ge=1, le=10_000, description="target bins per window")
    outputs: Literal["neurons", "sums"] = Field("sums", description="every neuron, or the E and I sums")
    inputs: Literal["outputs", "neurons", "sectors"] = Field(
        "outputs", description="input channels: the outputs, every neuron's counts (gid order) whatever the "
        "outputs (with outputs = \"neurons\" both are the same), or with outputs = \"sums\" the sums over "
        "`sectors` contiguous blocks of each type's cells (on a ring, arcs of it)")
    sectors: int = Field(10, ge=1, le=100_000, description="with inputs = \"sectors\": blocks per population type")
    external: bool = Field(False, description="also feed the Poisson drive events (per neuron or summed as the "
                           "outputs) as input channels, not predicted; the runs record record.drive_counts")
    skip_ms: float = Field(100.0, ge=0, description="initial transient left out of every run, ms")
    cache_mib: int = Field(256, ge=1, le=1 << 20, description="MiB of decoded bins kept in memory (least recently "
                           "used dropped); windows drawn in random order from more bins than fit are read again "
                           "from the store (every neuron's counts of 32 ring600 runs of 10 s: 760 MiB at 1 ms)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="without validation seeds: the last part of "
                                "every training run used for validation")
    rollout_ms: float = Field(50.0, gt=0, description="longest rollout horizon, ms")
    rollout_windows: int = Field(256, ge=1, description="test windows rolled out (evenly spaced)")

    @model_validator(mode="after")
    def _sectors_of_sums(self) -> Data:
        if self.inputs == "sectors" and self.outputs != "sums":
            raise ValueError("data.inputs = \"sectors\" predicts the E and I sums: set data.outputs = \"sums\" "
                             "(or data.inputs = \"outputs\" for every neuron)")
        return self


class Model(Strict):
    kind: Literal["window", "neuron"] = Field(
        "window", description="window: an LSTM over the k input bins of the input channels; neuron: one LSTM "
        "shared by every neuron, streamed along whole runs, fed each neuron's own counts, synaptic input and "
        "drive (eilab.ml.neuronwise; data.horizon = 1)")
    hidden: int = Field(64, ge=1, le=65_536, description="LSTM hidden units")
    layers: int = Field(1, ge=1, le=16, description="stacked LSTM layers")
    tbptt: int = Field(50, ge=1, le=1_000_000, description="kind = neuron: bins per truncated-backpropagation step")
    streams: int = Field(5, ge=1, le=10_000, description="kind = neuron: run segments streamed side by side")
    loss: Literal["outputs", "neurons"] = Field(
        "outputs", description="kind = neuron: the squared error of the outputs over their sd, or of every "
        "neuron's count (which neuron fires, not only how many)")
    next_drive: bool = Field(False, description="kind = neuron with data.external: the head gives each neuron's "
                             "count per level of its next bin's drive events; next-bin predictions average over "
                             "the drive's levels, rollouts draw each count given its bin's true drive")


class TrainSettings(Strict):
    """How the LSTM trains (eilab.ml.lstm.train)."""

    epochs: int = Field(20, ge=1, le=1_000_000, description="at most this many epochs")
    lr: float = Field(1e-3, gt=0, le=1, description="Adam learning rate")
    batch: int = Field(256, ge=1, le=1 << 20, description="windows per step")
    patience: int = Field(3, ge=1, description="epochs without a better validation loss before stopping")
    lr_decay: float = Field(1.0, gt=0, le=1, description="the learning rate is multiplied by this after every "
                            "lr_patience epochs in a row without a better validation loss; 1: constant")
    lr_patience: int = Field(2, ge=1, description="epochs without a better validation loss before a decay")
    seed: int = Field(0, ge=0, lt=2**63, description="torch seed (weights, shuffling)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto (CUDA when present), cpu, "
                        "cuda or cuda:N")
    threads: int = Field(1, ge=1, le=1024, description="CPU threads of torch (fixed: results repeat)")
    windows_per_epoch: int = Field(0, ge=0, description="training windows drawn per epoch; 0: all")
    validation_windows: int = Field(0, ge=0, description="validation windows per epoch, evenly spaced; 0: all")


class CeilingSettings(Strict):
    """The predictability ceiling on the test runs (eilab.ml.ceiling): off unless branches > 0."""

    branches: int = Field(0, ge=0, le=1_000_000, description="branch points over the test runs in all; 0: no ceiling")
    seeds: int = Field(16, ge=2, le=100_000, description="drive seeds per branch point (the spread is across them)")
    horizon_ms: float = Field(10.0, gt=0, description="longest rollout step with a ceiling, ms (at least one bin)")


class TrainConfig(Strict):
    task: Literal["predict"] = Field("predict", description="predict counts (LSTM) or classify the E/I ratio")
    data: Data
    model: Model = Field(default_factory=Model)
    train: TrainSettings = Field(default_factory=TrainSettings)
    ceiling: CeilingSettings = Field(default_factory=CeilingSettings)

    @model_validator(mode="after")
    def _neuron_kind_next_bin(self) -> TrainConfig:
        if self.model.kind == "neuron" and self.data.horizon != 1:
            raise ValueError(f"model.kind = \"neuron\" predicts the next bin: set data.horizon = 1 (it is "
                             f"{self.data.horizon})")
        return self

    @model_validator(mode="after")
    def _next_drive_of_neurons(self) -> TrainConfig:
        if self.model.next_drive and (self.model.kind != "neuron" or not self.data.external):
            raise ValueError("model.next_drive needs model.kind = \"neuron\" and data.external = true (it "
                             "conditions each neuron's count on the drive events of its bin)")
        if self.model.loss == "neurons" and self.model.kind != "neuron":
            raise ValueError("model.loss = \"neurons\" needs model.kind = \"neuron\" (the windowed LSTM predicts "
                             "the outputs only)")
        return self

    @model_validator(mode="after")
    def _rollout_fits(self) -> TrainConfig:
        if self.data.rollout_ms < self.data.bin_ms:
            raise ValueError(f"data.rollout_ms = {self.data.rollout_ms} is shorter than one bin "
                             f"(data.bin_ms = {self.data.bin_ms})")
        return self

    @property
    def rollout_bins(self) -> int:
        return max(1, round(self.data.rollout_ms / self.data.bin_ms))

    @property
    def ceiling_bins(self) -> int:
        """Rollout steps with a ceiling: ceiling.horizon_ms in bins, at least 1, at most the rollout's."""
        return min(self.rollout_bins, max(1, round(self.ceiling.horizon_ms / self.data.bin_ms)))


class Grid(Strict):
    """The E/I-ratio classes: every factor multiplies the [vars] named in `scale` (the inhibitory weights)."""

    scale: list[str] = Field(min_length=1, description="[vars] of the simulation config scaled by each factor")
    factors: list[float] = Field(min_length=2, description="one class per factor, e.g. [0.8, 1.0, 1.2]")

    @model_validator(mode="after")
    def _distinct(self) -> Grid:
        if len(set(self.factors)) != len(self.factors) or any(f <= 0 for f in self.factors):
            raise ValueError("factors must be distinct and > 0")
        return self


class ClassifyData(Strict):
    config: str = Field(description="simulation config: a bundled name (eilab configs) or a .toml path")
    set: list[str] = Field(default_factory=list, description="overrides, as eilab run --set KEY=VALUE")
    grid: Grid
    seeds: Seeds
    runs_dir: str = Field("", description="where the runs are kept and reused; default <out>/runs")
    bin_ms: float = Field(1.0, gt=0, description="bin width of the E/I sums, ms")
    window_ms: float = Field(1000.0, gt=0, description="length of one sample, ms (windows do not overlap)")
    skip_ms: float = Field(100.0, ge=0, description="initial transient left out of every run, ms")


class ClassifyModel(Strict):
    channels: int = Field(16, ge=1, le=4096, description="filters of each of the two convolutions")
    kernel: int = Field(9, ge=1, le=1001, description="convolution width, bins")
    head_hidden: int = Field(32, ge=0, le=4096, description="hidden ReLU units of the heads, fed the pooled filters "
                             "and the window's mean E and I counts; 0: linear heads on the pooled filters alone")


class ClassifyConfig(Strict):
    task: Literal["ei_ratio"]
    data: ClassifyData
    model: ClassifyModel = Field(default_factory=ClassifyModel)
    train: TrainSettings = Field(default_factory=TrainSettings)

    @model_validator(mode="after")
    def _validation_runs(self) -> ClassifyConfig:
        if not self.data.seeds.validation:
            raise ValueError("data.seeds.validation: the classifier needs validation seeds (early stopping and the "
                             "logistic penalty are chosen on them)")
        return self


def load_train_config(path: str | Path) -> tuple[TrainConfig | ClassifyConfig, str]:
    """The validated training config of a TOML file (`task = "ei_ratio"`: the classifier), and the file's text."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such training config (give the path to a .toml file, e.g. "
                          "configs/train/lstm_ring600_sums.toml)")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; is it a training config?")
    try:
        text = p.read_bytes().decode("utf-8")
        raw = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        from eilab.ml.surrogate_data import SurrogateConfig
        from eilab.ml.surrogate_net_config import SurrogateNetConfig

        model = {"ei_ratio": ClassifyConfig, "surrogate": SurrogateConfig,
                 "surrogate_net": SurrogateNetConfig}.get(raw.get("task"), TrainConfig)
        return model.model_validate(raw), text
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path))) from None
