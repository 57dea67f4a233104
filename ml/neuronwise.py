"""The neuron-wise LSTM (`model.kind = "neuron"`, issue 22): one LSTM shared by every neuron, run along whole
segments of a run (truncated backpropagation through time, Williams & Peng 1990), that reads per bin what a
neuron's membrane integrates and predicts its count in the next bin; the outputs are these expected counts,
summed per population type for summed outputs.

Per neuron and bin the inputs are its own spike count, the excitatory and inhibitory synaptic input it
received (the counts of its presynaptic cells weighted by the connectivity the run was built with,
`eilab.analysis.spectra.weight_matrix`, in the weights' units), its type (one-hot) and, with `data.external`,
its own drive events. The subthreshold state that decides the next bin is hidden from the E and I sums
(benchmarks/ml_hidden_state.py: a ridge on the replayed membrane-potential histograms reaches the
predictability ceiling, one on the counts stays far above it); a neuron's own history of spikes and inputs
is what determines it, and one small LSTM learns that integration for all neurons at once. A linear filter
shared by all neurons and summed over them is a linear filter of the summed inputs, which `ridge_ar` on the
E and I sums (and drive sums) is: the baselines stand on the same information.

A segment (run, bins [lo, hi)) is streamed from its first bin with a fresh state; the prediction of bin j
uses the segment's bins lo .. j - 1, and scores start at lo + k, the first target of the segment's windows,
so no bin of another split is read. Expected counts pass through softplus; the loss is the MSE of the
outputs over the training split's output sd (the windowed LSTM's loss). Inputs are built per `tbptt` bins
and dropped; the synaptic maps are kept per run (one sparse matrix of the network's synapses each).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eilab.ml.config import TrainSettings
from eilab.ml.data import TYPES, BlockCache, RunSeries, Segment, WindowSet, channel_stats
from eilab.sim.reader import Run


def draw_counts(mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integer counts with the given means and the least variance: floor(mean) plus a Bernoulli draw of the
    fraction. Refractoriness keeps a neuron's count per bin below Poisson variability: in ring600 a neuron
    fires at most once per bin of 1 to 10 ms (a second spike in 5e-6 of the 10 ms neuron-bins), and Poisson
    draws of its expected count (variance 0.26 per neuron-bin at 10 ms, against 0.14 in the runs) feed the
    LSTM doublets it never saw."""
    whole = torch.floor(mean)
    return whole + torch.bernoulli(mean - whole, generator=generator)


ROLLOUT_SAMPLES = 16
"""Futures a rollout averages (Streamer.rollout): expected counts fed back as if they were spikes would give the
LSTM inputs it never saw (every neuron a fraction of a spike in every bin)."""


def synaptic_maps(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse (pre, post) excitatory and inhibitory weight magnitudes of a run's network."""
    from eilab.analysis.spectra import weight_matrix

    w = weight_matrix(run.config).T.tocoo()  # [pre, post], signed
    maps = []
    for sign in (1.0, -1.0):
        keep = sign * w.data > 0
        idx = torch.from_numpy(np.stack([w.row[keep], w.col[keep]]).astype(np.int64))
        maps.append(torch.sparse_coo_tensor(idx, torch.from_numpy(sign * w.data[keep]).float(), w.shape,
                                            check_invariants=True).coalesce())
    return maps[0], maps[1]


@dataclass
class NeuronInputs:
    """The per-neuron input channels (module docstring) of bins of per-neuron series (`per_neuron`)."""

    external: bool
    maps: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # by run directory

    @property
    def channels(self) -> int:
        return 3 + len(TYPES) + (1 if self.external else 0)

    def of(self, series: RunSeries, lo: int, hi: int) -> torch.Tensor:
        """(hi - lo, neurons, channels) float32 of the stored bins [lo, hi), not normalised."""
        n = series.type_of.size
        b = torch.from_numpy(series.bins(lo, hi))
        return self.assemble(series, b[:, :n], b[:, n:] if self.external else None)

    def assemble(self, series: RunSeries, counts: torch.Tensor, drive: torch.Tensor | None) -> torch.Tensor:
        """(rows, neurons, channels) float32 from counts (rows, neurons), stored or expected, and the drive
        events (rows, neurons) with `external`."""
        key = str(series.run.path)
        if key not in self.maps:
            self.maps[key] = synaptic_maps(series.run)
        rows, n = counts.shape
        exc, inh = (torch.sparse.mm(m.t(), counts.t()).t() for m in self.maps[key])
        parts = [counts[..., None], exc[..., None], inh[..., None],
                 torch.from_numpy(series.by_type)[None].expand(rows, n, len(TYPES))]
        if drive is not None:
            parts.append(drive[..., None])
        return torch.cat(parts, dim=2)


def per_neuron(series: list[RunSeries]) -> list[RunSeries]:
    """The same runs as series of every neuron's counts (and drive events with `external`), same keys."""
    cache = BlockCache(series[0].cache.max_bytes)
    return [RunSeries(s.run, s.key, s.bin_ms, "neurons", cache, s.external) for s in series]


class NeuronLSTM(nn.Module):
    """The shared LSTM and its softplus head; `by_type` (neurons, types) sums the expected counts per type,
    None keeps every neuron. With `level_p` (neurons, levels; `model.next_drive`) the head gives one expected
    count per level of the next bin's drive events (0, 1, ..., the last level and more): the count given that
    drive, and, with the drive unknown, their mean under each neuron's level probabilities."""

    def __init__(self, channels: int, hidden: int, layers: int, by_type: np.ndarray | None,
                 mean_count: float = 0.01, level_p: np.ndarray | None = None) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 1 if level_p is None else level_p.shape[1])
        nn.init.zeros_(self.head.weight)  # start at the mean count per neuron and bin
        nn.init.constant_(self.head.bias, float(np.log(np.expm1(max(mean_count, 1e-4)))))
        self.register_buffer("by_type", None if by_type is None else torch.from_numpy(by_type))
        self.register_buffer("level_p", None if level_p is None else torch.from_numpy(level_p.astype(np.float32)))

    def level_rates(self, x: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """x (S, L, neurons, channels) normalised -> every neuron's expected count of the next bins per level of
        their drive (S, L, neurons, levels; one level without `level_p`), state ((layers, S x neurons, hidden)
        twice, sequence-major)."""
        s, length, n, c = x.shape
        h, state = self.lstm(x.permute(0, 2, 1, 3).reshape(s * n, length, c), state)
        return nn.functional.softplus(self.head(h)).view(s, n, length, -1).transpose(1, 2), state

    def pick(self, levels: torch.Tensor, next_drive: torch.Tensor | None) -> torch.Tensor:
        """(S, L, neurons) expected counts from `level_rates`: given the next bins' drive events (S, L, neurons)
        or, without them, averaged over the drive's level probabilities."""
        if self.level_p is None:
            return levels[..., 0]
        if next_drive is None:
            return (levels * self.level_p).sum(-1)
        top = self.level_p.shape[1] - 1
        return levels.gather(-1, next_drive.round().clamp(0, top).long()[..., None])[..., 0]

    def rates(self, x: torch.Tensor, state: tuple | None = None,
              next_drive: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple]:
        """x (S, L, neurons, channels) normalised -> every neuron's expected count of the next bins (S, L,
        neurons; given `next_drive` (S, L, neurons) or averaged over it), state."""
        levels, state = self.level_rates(x, state)
        return self.pick(levels, next_drive), state

    forward = rates

    def outputs(self, per_neuron: torch.Tensor) -> torch.Tensor:
        """(..., neurons) -> (..., outputs): summed per type for summed outputs."""
        return per_neuron if self.by_type is None else per_neuron @ self.by_type


@dataclass
class Streamer:
    """Streams segments of per-neuron series through a NeuronLSTM, `tbptt` bins at a time."""

    net: NeuronLSTM
    inputs: NeuronInputs
    mean: torch.Tensor  # (channels,) input normalisation (training split)
    sd: torch.Tensor
    tbptt: int
    device: torch.device
    neuron_loss: bool = False  # train on every neuron's count rather than on the outputs (model.loss)

    def normed(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs normalised with the training split's statistics, on the model's device."""
        return ((x - self.mean) / self.sd).to(self.device)

    def chunks(self, series: list[RunSeries], segs: list[Segment],
               targets: bool = False) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor | None]]:
        """(a, b, every neuron's expected counts (S, b - a, neurons) of bins lo + a + 1 .. lo + b, and with
        `targets` those bins as stored (`stored`), else None) per chunk of equally long segments; with
        `targets` a model that takes the next bin's drive (`model.next_drive`: the training loss) is given it,
        else it averages over it. The state is carried (detached) from chunk to chunk."""
        length, n = segs[0].hi - segs[0].lo, series[0].type_of.size
        state = None
        for a in range(0, length - 1, self.tbptt):
            b = min(length - 1, a + self.tbptt)
            x = torch.stack([self.inputs.of(series[g.series], g.lo + a, g.lo + b) for g in segs])
            later = self.stored(series, segs, a + 1, b + 1) if targets else None
            nxt = later[..., n:] if later is not None and self.net.level_p is not None else None
            rate, state = self.net.rates(self.normed(x), state, nxt)
            yield a, b, rate, later
            state = tuple(t.detach() for t in state)

    def stored(self, series: list[RunSeries], segs: list[Segment], a: int, b: int) -> torch.Tensor:
        """The stored bins lo + a .. lo + b - 1 (S, b - a, columns): every neuron's counts, then with `external`
        its drive events."""
        return torch.stack([torch.from_numpy(series[g.series].bins(g.lo + a, g.lo + b)) for g in segs]).to(self.device)

    @torch.no_grad()
    def predict(self, series: list[RunSeries], seg: Segment) -> np.ndarray:
        """Expected outputs (hi - lo, outputs) of every bin of one segment; row 0 (no history) is NaN."""
        self.net.eval()
        body = [self.net.outputs(rate)[0].cpu().numpy() for _, _, rate, _ in self.chunks(series, [seg])]
        n_out = self.net.by_type.shape[1] if self.net.by_type is not None else series[0].type_of.size
        return np.concatenate([np.full((1, n_out), np.nan, np.float32), *body]).astype(np.float32)

    @torch.no_grad()
    def rollout(self, series: list[RunSeries], seg: Segment, firsts: np.ndarray, steps: int,
                samples: int = ROLLOUT_SAMPLES, seed: int = 0) -> np.ndarray:
        """Expected outputs (len(firsts), steps, outputs) of bins f .. f + steps - 1 for each first bin f
        (ascending, seg.lo < f, f + steps <= seg.hi): the segment streamed from seg.lo to f - 1, the history of
        the next-bin prediction; then `samples` futures, in each of which every neuron's count is drawn
        (`draw_counts` of its expected count, a stream keyed by `seed` and f) and fed back as its own count
        and, through the connectivity, as the synaptic input of its targets, the drive coming from the true
        future (`external`); each step's expected counts (without that step's drive) are averaged over the
        futures. A model that takes the next bin's drive (`model.next_drive`) draws each count given the drive
        of its bin, so that the counts it feeds back beside the drive go with it as in a run."""
        self.net.eval()
        run, n = series[seg.series], series[seg.series].type_of.size
        states, first_levels, state, at, levels = [], [], None, seg.lo, None
        for f in firsts:
            for a in range(at, f, self.tbptt):
                lv, state = self.net.level_rates(
                    self.normed(self.inputs.of(run, a, min(f, a + self.tbptt)))[None], state)
                levels = lv[0, -1]
            at = f
            states.append(tuple(t.repeat(1, samples, 1) for t in state))  # future m of window b: row b x samples + m
            first_levels.append(levels)
        state = tuple(torch.cat([st[i] for st in states], dim=1) for i in range(2))
        futures = torch.stack(first_levels).repeat_interleave(samples, dim=0)  # (B x samples, neurons, levels)
        drive = torch.stack([torch.from_numpy(run.bins(f, f + steps)[:, n:]) for f in firsts]).repeat_interleave(
            samples, dim=0) if self.inputs.external else None  # (B x samples, steps, neurons)
        gens = [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, int(f)]).generate_state(1)[0]))
                for f in firsts]  # one stream per first bin: a window's futures do not depend on the batch
        out = []
        for i in range(steps):
            out.append(self.net.pick(futures[:, None], None)[:, 0].view(len(firsts), samples, n).mean(dim=1))
            if i == steps - 1:
                break
            given = None if drive is None else drive[:, i, None].to(self.device)
            mean = self.net.pick(futures[:, None], given)[:, 0].cpu()
            drawn = torch.cat([draw_counts(mean[b * samples : (b + 1) * samples], g) for b, g in enumerate(gens)])
            x = self.inputs.assemble(run, drawn, None if drive is None else drive[:, i])
            lv, state = self.net.level_rates(self.normed(x)[:, None], state)
            futures = lv[:, 0]
        return self.net.outputs(torch.stack(out, dim=1)).cpu().numpy()

    def loss(self, series: list[RunSeries], segs: list[Segment], k: int, out_sd: torch.Tensor,
             opt: torch.optim.Optimizer | None = None) -> tuple[float, int]:
        """Summed squared error of the bins from lo + k on (a step of `opt` per chunk when given), and the
        number of terms: of the outputs over their sd, or with `neuron_loss` of every neuron's count."""
        total, terms = 0.0, 0
        for a, _, rate, later in self.chunks(series, segs, targets=True):
            keep = slice(max(0, k - a - 1), None)  # bins lo + a + 1 + j >= lo + k
            y = later[..., : rate.shape[2]]
            err = (rate - y if self.neuron_loss else (self.net.outputs(rate) - self.net.outputs(y)) / out_sd)[:, keep]
            if err.numel() == 0:
                continue
            if opt is not None:
                opt.zero_grad()
                err.pow(2).mean().backward()
                opt.step()
            total += float(err.detach().pow(2).sum())
            terms += err.numel()
        return total, terms


def groups(order: np.ndarray, segs: list[Segment], size: int) -> list[list[Segment]]:
    """The segments in `order`, `size` at a time among those of equal length."""
    by_len: dict[int, list[Segment]] = {}
    for i in order:
        by_len.setdefault(segs[i].hi - segs[i].lo, []).append(segs[i])
    return [v[a : a + size] for v in by_len.values() for a in range(0, len(v), size)]


def input_stats(inputs: NeuronInputs, series: list[RunSeries],
                segs: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and sd over every neuron and bin of the segments (the training split)."""
    def parts() -> Iterator[np.ndarray]:
        for g in segs:
            x = inputs.of(series[g.series], g.lo, g.hi)
            yield x.reshape(-1, x.shape[-1]).numpy()
    return channel_stats(parts())


MAX_LEVELS = 64
"""Drive levels of `model.next_drive` at most (the last one holds every larger count)."""


def drive_levels(series: list[RunSeries], segs: list[Segment]) -> np.ndarray:
    """(types, levels) fraction of each type's neuron-bins of the segments (the training split) with 0, 1, ...
    drive events, the last level holding the largest count seen (at most MAX_LEVELS levels). The drive is
    independent of the network, so these are the level probabilities of any bin. ValueError for a drive that
    is not a count of events (current drive)."""
    hist = np.zeros((len(TYPES), MAX_LEVELS))
    top = 0
    for g in segs:
        ser = series[g.series]
        d = ser.bins(g.lo, g.hi)[:, ser.type_of.size :]
        if not np.array_equal(d, np.round(d)) or d.min() < 0:
            raise ValueError(f"{ser.run.path}: the drive is not a count of events (current drive?); "
                             "model.next_drive needs Poisson or spike drives")
        d = np.minimum(d, MAX_LEVELS - 1).astype(np.int64)
        top = max(top, int(d.max()))
        for t in range(len(TYPES)):
            hist[t] += np.bincount(d[:, ser.type_of == t].ravel(), minlength=MAX_LEVELS)
    hist = hist[:, : top + 1]
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)


def train(streamer: Streamer, series: list[RunSeries], train_set: WindowSet, val_set: WindowSet,
          out_sd: np.ndarray, streams: int, s: TrainSettings, folder: Path, max_epochs: int | None,
          progress: bool) -> list[dict]:
    """Adam on the streamed loss through `eilab.ml.lstm.fit` (checkpoints, resume, early stopping): each epoch
    every training segment once, `streams` side by side; the validation loss over every validation segment.
    `windows_per_s` in the history counts target bins."""
    from eilab.ml.lstm import fit

    sd = torch.from_numpy(out_sd).to(streamer.device)
    k = train_set.k

    def run_epoch(order: np.ndarray, opt: torch.optim.Optimizer) -> dict[str, float]:
        total, terms = 0.0, 0
        for group in groups(order, train_set.segments, streams):
            t, n = streamer.loss(series, group, k, sd, opt)
            total, terms = total + t, terms + n
        per_bin = series[0].type_of.size if streamer.neuron_loss else sd.numel()  # squared errors per target bin
        return {"train_loss": total / max(1, terms), "target_bins": terms / per_bin}

    @torch.no_grad()
    def validate() -> float:
        streamer.net.eval()
        parts = [streamer.loss(series, g, k, sd) for g in groups(np.arange(len(val_set.segments)),
                                                                 val_set.segments, streams)]
        return sum(t for t, _ in parts) / max(1, sum(n for _, n in parts))

    history = fit(streamer.net, s, folder, len(train_set.segments), run_epoch, validate, max_epochs, progress)
    for e in history:  # fit counts segments per second
        e["windows_per_s"] = e["windows_per_s"] * e["target_bins"] / max(1, len(train_set.segments))
    return history


@dataclass
class NeuronPredictor:
    """Predictions of a trained NeuronLSTM for windows: each window's segment streamed once (cached), the
    expected outputs of its target bin read off."""

    streamer: Streamer
    segments: dict[tuple, np.ndarray] = field(default_factory=dict)
    series: dict[int, tuple[list[RunSeries], list[RunSeries]]] = field(default_factory=dict)  # (given, per neuron)

    def neurons(self, windows: WindowSet) -> list[RunSeries]:
        """The per-neuron series of the windows' runs."""
        if id(windows.series) not in self.series:  # the given list is kept: its id stays its own
            self.series[id(windows.series)] = (windows.series, per_neuron(windows.series))
        return self.series[id(windows.series)][1]

    def rollout_windows(self, windows: WindowSet, ids: np.ndarray) -> np.ndarray:
        """Rollouts (B, windows.h, outputs) from the first target bin of windows `ids` (Streamer.rollout)."""
        series = self.neurons(windows)
        seg_of, start = windows.locate(ids)
        out = np.zeros((len(ids), windows.h, windows.n_out), np.float32)
        for s in np.unique(seg_of):
            mine = np.flatnonzero(seg_of == s)
            mine = mine[np.argsort(start[mine], kind="stable")]
            out[mine] = self.streamer.rollout(series, windows.segments[s], start[mine] + windows.k, windows.h)
        return out

    def predict_windows(self, windows: WindowSet, ids: np.ndarray) -> np.ndarray:
        """(B, 1, outputs) for windows `ids` (horizon 1)."""
        series = self.neurons(windows)
        seg_of, start = windows.locate(ids)
        out = []
        for s, b in zip(seg_of, start, strict=True):
            seg = windows.segments[s]
            key = (id(windows.series), seg)
            if key not in self.segments:
                self.segments[key] = self.streamer.predict(series, seg)
            out.append(self.segments[key][b + windows.k - seg.lo])
        return np.stack(out)[:, None] if out else np.zeros((0, 1, windows.n_out), np.float32)


def make_streamer(model: dict, like: RunSeries, external: bool, mean: np.ndarray, sd: np.ndarray,
                  device: torch.device, levels: np.ndarray | None = None) -> Streamer:
    """A Streamer with a new NeuronLSTM (`model`: the config's [model]) for the outputs of series `like`;
    `levels` (types, levels) the drive's level probabilities (`drive_levels`) with `model.next_drive`."""
    inputs = NeuronInputs(external)
    by_type = like.by_type if like.outputs == "sums" else None
    level_p = None if levels is None else like.by_type @ np.asarray(levels, np.float64)
    net = NeuronLSTM(inputs.channels, model["hidden"], model["layers"], by_type, mean_count=float(mean[0]),
                     level_p=level_p)
    return Streamer(net.to(device), inputs, torch.from_numpy(np.asarray(mean, np.float32)),
                    torch.from_numpy(np.asarray(sd, np.float32)), model["tbptt"], device,
                    model.get("loss", "outputs") == "neurons")
