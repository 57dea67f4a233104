"""Windowed datasets over stored runs, read lazily (docs/architecture.md, "Learning from runs").

A window starting at bin s has the input bins [s, s + k) and the target bins [s + k, s + k + h) of one
run's series: spike counts in bins of `bin_ms` (a whole multiple of the run's counts bin), either every
neuron (`outputs = "neurons"`, channels in gid order) or the sums over the cells of each population type
(`outputs = "sums"`, channels E then I). The first `n_out` input channels are the predicted ones; with
`external`, as many channels of the Poisson drive events (the run's drive_counts, binned and summed the same
way) follow them: fed, never predicted (issue 22, point 1). With `inputs = "neurons"` and summed outputs the
input channels are every neuron's counts (and drive events) instead, and the targets their E and I sums
(`output_channels`): the predictors see the network state the sums hide. With `inputs = "sectors"` they are the
sums over `sectors` contiguous blocks of each type's cells in gid order (E blocks, then I; on a ring network,
arcs of the ring: where in the ring the activity is), a state between the two sums and every neuron.

Splits are lists of segments (run, first bin, end bin): whole runs (held-out seeds) or stretches of a run
(`split_time`, which leaves a gap of k + h bins between them); a window lies inside one segment, so no
window, nor any bin of one, is shared between splits. Bins are read a block of counts chunk rows at a
time through a byte-bounded LRU (`BlockCache`): a dataset over many runs never holds them all.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from eilab.sim.config import ConfigError
from eilab.sim.reader import Run

Outputs = Literal["neurons", "sums"]
Inputs = Literal["outputs", "neurons", "sectors"]
TYPES = ("E", "I")


class BlockCache:
    """Decoded blocks of series bins, least recently used dropped first beyond `max_bytes`."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self.blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.bytes = 0

    def get(self, key: tuple[int, int]) -> np.ndarray | None:
        block = self.blocks.get(key)
        if block is not None:
            self.blocks.move_to_end(key)
        return block

    def put(self, key: tuple[int, int], block: np.ndarray) -> None:
        self.blocks[key] = block
        self.bytes += block.nbytes
        while self.bytes > self.max_bytes and len(self.blocks) > 1:
            _, old = self.blocks.popitem(last=False)
            self.bytes -= old.nbytes


def group_factor(run: Run, bin_ms: float) -> int:
    """How many stored counts bins make one bin of `bin_ms`; ConfigError when it is not a whole number."""
    if run.bin_ms is None or "counts" not in run.root:
        raise ConfigError(f"{run.path}: the run recorded no spike counts (set record.counts_bin_ms > 0 in its config)")
    g = bin_ms / run.bin_ms
    if g < 1 - 1e-9 or abs(g - round(g)) > 1e-9:
        raise ConfigError(f"data.bin_ms = {bin_ms}: must be a whole multiple of the run's counts bin "
                          f"({run.bin_ms} ms, record.counts_bin_ms of {run.path})")
    return round(g)


def channel_names(run: Run, outputs: Outputs) -> list[str]:
    """Names of the series channels: population types for sums, `<population>:<index>` for neurons."""
    if outputs == "sums":
        return list(TYPES)
    return [f"{name}:{i}" for name, p in sorted(run.populations.items(), key=lambda kv: kv[1]["gid0"])
            for i in range(p["n"])]


def output_channels(x: np.ndarray, n_out: int, summed: np.ndarray | None) -> np.ndarray:
    """The predicted channels (..., n_out) of series values x (..., channels): the first n_out, or with `summed`
    (neurons, n_out; 1 where a neuron is of an output's type) the per-type sums of the neuron channels (exact for
    counts below 2^24 in float32)."""
    return x[..., :n_out] if summed is None else x[..., : summed.shape[0]] @ summed


def sector_map(type_of: np.ndarray, sectors: int) -> np.ndarray:
    """(neurons, types x sectors): 1 where a neuron lies in a sector, the cells of each type (gid order) cut into
    `sectors` contiguous blocks of near-equal size; ConfigError when a type has fewer cells than sectors."""
    pool = np.zeros((type_of.size, len(TYPES) * sectors), np.float32)
    for t, name in enumerate(TYPES):
        cells = np.flatnonzero(type_of == t)
        if 0 < cells.size < sectors:
            raise ConfigError(f"data.sectors = {sectors}: the {name} cells ({cells.size}) are fewer than the "
                              "sectors; set data.sectors to at most that")
        if cells.size:
            pool[cells, t * sectors + np.arange(cells.size) * sectors // cells.size] = 1
    return pool


@dataclass
class RunSeries:
    """One run's series of counts in bins of `bin_ms` (module docstring), read a block at a time."""

    run: Run
    key: int
    bin_ms: float
    outputs: Outputs
    cache: BlockCache
    external: bool = False
    inputs: Inputs = "outputs"
    sectors: int = 10
    group: int = field(init=False)
    block_bins: int = field(init=False)
    n_bins: int = field(init=False)
    type_of: np.ndarray = field(init=False, repr=False)
    by_type: np.ndarray = field(init=False, repr=False)
    pool: np.ndarray | None = field(init=False, repr=False)
    summed: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.group = group_factor(self.run, self.bin_ms)
        if self.external and "drive_counts" not in self.run.root:
            raise ConfigError(f"data.external = true: {self.run.path} recorded no drive counts (its config needs "
                              "record.drive_counts = true; remove the run to have it simulated again)")
        rows = self.run.root["counts"].chunks[0]
        self.block_bins = max(1, rows // self.group)
        self.n_bins = self.run.root["counts"].shape[0] // self.group
        self.type_of = np.zeros(self.run.root["counts"].shape[1], np.int64)
        for p in self.run.populations.values():
            self.type_of[p["gid0"] : p["gid0"] + p["n"]] = TYPES.index(p["type"])
        self.by_type = (self.type_of[:, None] == np.arange(len(TYPES))).astype(np.float32)  # (neurons, types)
        # pool: the map of every neuron's counts to the input channels (None: each neuron); summed: the input
        # channels' map to the summed outputs where they are not the first input channels
        self.pool, self.summed = (self.by_type, None) if self.outputs == "sums" else (None, None)
        if self.outputs == "sums" and self.inputs == "neurons":
            self.pool, self.summed = None, self.by_type
        elif self.outputs == "sums" and self.inputs == "sectors":
            self.pool = sector_map(self.type_of, self.sectors)
            self.summed = np.repeat(np.eye(len(TYPES), dtype=np.float32), self.sectors, axis=0)

    @property
    def n_out(self) -> int:
        """Predicted channels: the spike counts."""
        return len(TYPES) if self.outputs == "sums" else self.type_of.size

    @property
    def n_channels(self) -> int:
        """Input channels: the counts (the outputs, or every neuron), then the drive counts with `external`."""
        return (self.type_of.size if self.pool is None else self.pool.shape[1]) * (2 if self.external else 1)

    def _binned(self, name: str, b0: int, b1: int) -> np.ndarray:
        """Array `name` (counts or drive_counts) over bins [b0, b1), per input channel (`pool`)."""
        raw = self.run.read(name, (slice(b0 * self.group, b1 * self.group), slice(None)))
        binned = raw.reshape(b1 - b0, self.group, -1).sum(axis=1, dtype=np.float32)
        return binned if self.pool is None else binned @ self.pool

    def _block(self, j: int) -> np.ndarray:
        block = self.cache.get((self.key, j))
        if block is None:
            b0, b1 = j * self.block_bins, min(self.n_bins, (j + 1) * self.block_bins)
            names = ("counts", "drive_counts") if self.external else ("counts",)
            block = np.ascontiguousarray(np.concatenate([self._binned(n, b0, b1) for n in names], axis=1),
                                         dtype=np.float32)
            self.cache.put((self.key, j), block)
        return block

    def bins(self, b0: int, b1: int) -> np.ndarray:
        """The series (b1 - b0, channels) of bins [b0, b1)."""
        if not 0 <= b0 <= b1 <= self.n_bins:
            raise IndexError(f"bins [{b0}, {b1}) outside the run's {self.n_bins} bins")
        j0, j1 = b0 // self.block_bins, max(b0, b1 - 1) // self.block_bins
        if j0 == j1:
            off = j0 * self.block_bins
            return self._block(j0)[b0 - off : b1 - off]
        parts = [self._block(j) for j in range(j0, j1 + 1)]
        off = j0 * self.block_bins
        return np.concatenate(parts)[b0 - off : b1 - off]


@dataclass(frozen=True)
class Segment:
    """Bins [lo, hi) of series `series` (an index into the dataset's list)."""

    series: int
    lo: int
    hi: int


def first_bin(skip_ms: float, bin_ms: float) -> int:
    """The first bin starting at or after skip_ms (the initial transient left out)."""
    return math.ceil(skip_ms / bin_ms - 1e-9)


def split_time(lo: int, hi: int, fraction: float, gap: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Bins [lo, hi) cut in two by time: the first (1 - fraction) minus a gap of `gap` bins, and the
    last `fraction`; no window of length `gap` fits across the cut."""
    cut = lo + round((1.0 - fraction) * (hi - lo))
    return (lo, max(lo, cut - gap)), (cut, hi)


@dataclass
class Normaliser:
    """Per-channel mean and standard deviation (counts per bin) of the inputs, from the training split only;
    `out_mean` and `out_std` those of the outputs where they are not the first input channels (neuron inputs,
    summed outputs), else None."""

    mean: np.ndarray
    std: np.ndarray
    out_mean: np.ndarray | None = None
    out_std: np.ndarray | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalised inputs (..., channels)."""
        return (x - self.mean[: x.shape[-1]]) / self.std[: x.shape[-1]]

    def outputs(self, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of the n_out outputs."""
        if self.out_mean is None or self.out_std is None:
            return self.mean[:n_out], self.std[:n_out]
        return self.out_mean, self.out_std

    def apply_outputs(self, y: np.ndarray) -> np.ndarray:
        """Normalised outputs (..., n_out)."""
        mean, std = self.outputs(y.shape[-1])
        return (y - mean) / std

    def invert(self, z: np.ndarray) -> np.ndarray:
        """Outputs (..., n_out) in counts per bin of normalised ones."""
        mean, std = self.outputs(z.shape[-1])
        return z * std + mean

    def to_json(self) -> dict[str, list[float]]:
        out = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.out_mean is not None and self.out_std is not None:
            out.update(out_mean=self.out_mean.tolist(), out_std=self.out_std.tolist())
        return out

    @classmethod
    def from_json(cls, d: dict[str, list[float]]) -> Normaliser:
        arrays = {k: np.asarray(v, np.float32) for k, v in d.items()}
        return cls(arrays["mean"], arrays["std"], arrays.get("out_mean"), arrays.get("out_std"))


def channel_stats(parts: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd (float32; sd 1 for a constant channel) per channel over the rows of every part; ConfigError
    when there are none."""
    n, s1, s2 = 0, 0.0, 0.0
    for part in parts:
        x = part.astype(np.float64)
        n, s1, s2 = n + x.shape[0], s1 + x.sum(axis=0), s2 + (x * x).sum(axis=0)
    if n == 0:
        raise ConfigError("the training split holds no bins: lengthen the runs (run.t_ms) or lower data.skip_ms")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


class WindowSet:
    """The windows (k input bins, h target bins) inside a list of segments, numbered 0 .. len - 1."""

    def __init__(self, series: list[RunSeries], segments: list[Segment], k: int, h: int) -> None:
        self.series, self.k, self.h = series, k, h
        self.segments = [s for s in segments if s.hi - s.lo >= k + h]
        sizes = [s.hi - s.lo - (k + h) + 1 for s in self.segments]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_out(self) -> int:
        return self.series[0].n_out

    @property
    def summed(self) -> np.ndarray | None:
        """The series' map from neuron input channels to summed outputs, or None (`output_channels`)."""
        return self.series[0].summed

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment index, first input bin) of each window id."""
        ids = np.asarray(ids, np.int64)
        seg = np.searchsorted(self.offsets, ids, side="right") - 1
        lo = np.array([s.lo for s in self.segments], np.int64)
        return seg, lo[seg] + ids - self.offsets[seg]

    def spans(self, ids: np.ndarray | None = None) -> list[tuple[int, int, int]]:
        """(series key, first bin, end bin) of every bin the windows touch, inputs and targets."""
        ids = np.arange(len(self)) if ids is None else ids
        seg, start = self.locate(ids)
        keys = [self.series[self.segments[s].series].key for s in seg]
        return [(key, int(b), int(b) + self.k + self.h) for key, b in zip(keys, start, strict=True)]

    def full(self, ids: np.ndarray) -> np.ndarray:
        """Every channel (B, k + h, channels) of the input and target bins of windows `ids` (float32)."""
        seg, start = self.locate(ids)
        windows = [self.series[self.segments[s].series].bins(int(b), int(b) + self.k + self.h)
                   for s, b in zip(seg, start, strict=True)]
        return np.stack(windows) if windows else np.zeros((0, self.k + self.h, self.series[0].n_channels),
                                                          np.float32)

    def batch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (B, k, channels) and targets (B, h, n_out) of windows `ids`, counts per bin (float32)."""
        w = self.full(ids)
        return w[:, : self.k], output_channels(w[:, self.k :], self.n_out, self.summed)

    def batches(self, size: int, ids: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """batch() of consecutive groups of `size` ids (default all windows in order)."""
        ids = np.arange(len(self)) if ids is None else ids
        for a in range(0, len(ids), size):
            yield self.batch(ids[a : a + size])

    def normaliser(self) -> Normaliser:
        """Mean and sd per input channel over every bin of the segments (the training split's statistics), and
        per output where the outputs are not the first input channels."""
        def parts() -> Iterator[np.ndarray]:
            return (self.series[seg.series].bins(seg.lo, seg.hi) for seg in self.segments)

        mean, std = channel_stats(parts())
        if self.summed is None:
            return Normaliser(mean, std)
        return Normaliser(mean, std, *channel_stats(output_channels(x, self.n_out, self.summed) for x in parts()))


@dataclass
class Splits:
    """train, validation and test windows of one dataset, and the training split's normaliser."""

    train: WindowSet
    validation: WindowSet
    test: WindowSet

    def items(self) -> list[tuple[str, WindowSet]]:
        return [("train", self.train), ("validation", self.validation), ("test", self.test)]


def make_splits(train: list[RunSeries], validation: list[RunSeries], test: list[RunSeries], k: int, h: int,
                skip_bins: int, val_fraction: float) -> Splits:
    """Splits by whole runs; without validation runs, the last `val_fraction` of each training run
    (after a gap of k + h bins) is the validation split."""
    series = [*train, *validation, *test]
    train_segs, val_segs = [], []
    for i, s in enumerate(train):
        if validation:
            train_segs.append(Segment(i, skip_bins, s.n_bins))
        else:
            (a, b), (c, d) = split_time(skip_bins, s.n_bins, val_fraction, k + h)
            train_segs.append(Segment(i, a, b))
            val_segs.append(Segment(i, c, d))
    val_segs += [Segment(len(train) + i, skip_bins, s.n_bins) for i, s in enumerate(validation)]
    test_segs = [Segment(len(train) + len(validation) + i, skip_bins, s.n_bins) for i, s in enumerate(test)]
    return Splits(WindowSet(series, train_segs, k, h), WindowSet(series, val_segs, k, h),
                  WindowSet(series, test_segs, k, h))


def open_series(runs: list[Run], bin_ms: float, outputs: Outputs, cache: BlockCache | None = None,
                external: bool = False, inputs: Inputs = "outputs", sectors: int = 10) -> list[RunSeries]:
    """Series of the runs sharing one cache (with `external`, the drive channels too; `inputs` and `sectors` as in
    the module docstring); ConfigError when their shapes differ or, with `external`, a run recorded no drive
    counts."""
    cache = cache or BlockCache()
    series = [RunSeries(r, i, bin_ms, outputs, cache, external, inputs, sectors) for i, r in enumerate(runs)]
    shapes = {(s.run.root["counts"].shape[1], s.group) for s in series}
    if len(shapes) > 1:
        raise ConfigError(f"the runs differ in neurons or counts bin ({sorted(shapes)}): use runs of one network")
    return series
