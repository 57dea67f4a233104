"""A network of neuron surrogates (issue 19, point 5): trained TCN-LSTM surrogates (eilab.ml.surrogate) of the
cells of an eilab `hh` network, wired as that network, with its connection strengths as trainable tensors, so
that Adam can reshape the population rhythm (docs/architecture.md, "Surrogate networks").

- **Network.** Read from an eilab engine config: `hh` populations (default parameters, as the surrogate was
  trained), `fixed_indegree` projections with fixed delays, Poisson drives. Each cell is one streaming surrogate
  (`SurrogateNet.step`, one bin of `bin_ms` at a time). A projection's weight w (pA) is exp(theta), theta
  trainable: positive by construction.
- **Input.** What the surrogate was trained on (eilab.ml.surrogate_data): per bin the weight arriving on the E and
  on the I synapse group, pA. A spike in bin b reaches its targets in bin b + delay / bin_ms; the external Poisson
  drive adds indegree x rate events per second of its weight to the E group.
- **Spikes.** A cell spikes in the first bin of a run of bins whose spike probability p reaches the surrogate's
  threshold (chosen on its validation split, as in its metrics). Surrogate gradient (SuperSpike, Zenke & Ganguli
  2018, Neural Comput. 30:1514): the forward pass uses that 0/1 spike, the backward pass the derivative of a fast
  sigmoid of the spike logit's distance u from the threshold's, 1 / (1 + |u|)^2, which stays informative for
  cells far from spiking (where p's own gradient vanishes).
- **Objective.** The population rate (Hz) of one population; its Welch spectrum (Hann window, half overlap,
  density scaling, as scipy.signal.welch) with torch.fft; loss = -log(power in the target band / power in
  `total_hz`), so the spectral peak is pushed into the target band. With `loss_smooth_ms` the powers are those of
  the rate smoothed by a Gaussian (the PSD times exp(-(2 pi f sigma)^2)): a train of sharp 10 Hz volleys has
  harmonics at 20 and 30 Hz nearly as strong as its fundamental, and without smoothing it already holds a fifth
  of its power in 15-30 Hz.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eilab.ml.surrogate_data import Scaling, SurrogateModel
from eilab.ml.surrogate_net_config import Band, NetObjective, NetOptimise
from eilab.sim.config import Config, ConfigError, HHParams

SURROGATE_FORMAT = "eilab-surrogate/1"


# ---------------------------------------------------------------- spectra
def welch(x: torch.Tensor, fs: float, nperseg: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Welch power spectral density of x (..., n) along its last axis: Hann window, nperseg // 2 overlap, each
    segment's mean removed, one-sided density (units of x squared per Hz), as scipy.signal.welch's defaults.
    Returns (frequencies Hz, PSD (..., nperseg // 2 + 1)). Differentiable."""
    if x.shape[-1] < nperseg:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than one Welch segment ({nperseg})")
    segs = x.unfold(-1, nperseg, nperseg // 2)
    segs = segs - segs.mean(dim=-1, keepdim=True)
    win = torch.hann_window(nperseg, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.fft.rfft(segs * win, dim=-1)
    power = (spec.real**2 + spec.imag**2) / (fs * (win**2).sum())
    one_sided = torch.full((power.shape[-1],), 2.0, dtype=x.dtype, device=x.device)
    one_sided[0] = 1.0
    if nperseg % 2 == 0:
        one_sided[-1] = 1.0
    return torch.fft.rfftfreq(nperseg, 1.0 / fs, dtype=x.dtype), (power * one_sided).mean(dim=-2)


def band_power(f: torch.Tensor, psd: torch.Tensor, band: Band) -> torch.Tensor:
    """Power in [low, high] Hz (the PSD summed times the frequency spacing), units of x squared."""
    inside = (f >= band[0]) & (f <= band[1])
    return psd[..., inside].sum(dim=-1) * float(f[1] - f[0])


def peak_frequency(f: np.ndarray, psd: np.ndarray, band: Band) -> float:
    """The frequency (Hz) of the largest PSD value in [low, high] Hz."""
    inside = (f >= band[0]) & (f <= band[1])
    return float(f[inside][np.argmax(psd[inside])])


# ---------------------------------------------------------------- surrogates
@dataclass
class Surrogate:
    """A trained surrogate: the net, its scaling, its bin (ms) and spike threshold."""

    net: Any  # eilab.ml.surrogate.SurrogateNet
    x_scale: torch.Tensor  # (groups,) pA per bin
    bin_ms: float
    threshold: float
    path: str
    cell: str = "hh"  # the detailed cell it was trained on


def load_surrogate(folder: str | Path) -> Surrogate:
    """The surrogate a `task = "surrogate"` training wrote to `folder` (meta.json, model.pt); ConfigError if none."""
    from eilab.ml.surrogate import SurrogateNet

    d = Path(folder)
    meta_path, weights = d / "meta.json", d / "model.pt"
    if not meta_path.is_file() or not weights.is_file():
        raise ConfigError(f"surrogate = {str(folder)!r}: no trained surrogate there (meta.json and model.pt); train "
                          "one with eilab train configs/train/surrogate_hh.toml --out <dir> and name that directory")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != SURROGATE_FORMAT:
        raise ConfigError(f"{meta_path}: format {meta.get('format')!r}, expected {SURROGATE_FORMAT}")
    net = SurrogateNet(int(meta["n_in"]), SurrogateModel.model_validate(meta["model"]), int(meta.get("n_dendrites", 0)))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    scaling = Scaling.from_json(meta["scaling"])
    return Surrogate(net, torch.as_tensor(scaling.x_scale, dtype=torch.float32), float(meta["bin_ms"]),
                     float(meta["thresholds"]["surrogate"]), str(folder), str(meta.get("cell", "hh")))


# ---------------------------------------------------------------- the network
@dataclass
class Projection:
    name: str
    pre: str
    post: str
    counts: torch.Tensor  # (N, N) synapses post <- pre (cell indices over the whole network)
    delay_bins: int
    channel: int  # 0: E group, 1: I group (the presynaptic population's type)
    weight_pa: float


@dataclass
class NetSpec:
    """The network as the surrogates see it: cells (populations in order), projections, drive rates."""

    populations: list[tuple[str, int, str]]  # (name, n, type)
    projections: list[Projection]
    drive_pa_per_ms: list[tuple[slice, float, float]]  # Poisson: (cells, events per ms per cell, weight pA)
    kicks: list[tuple[slice, list[float], float]]  # input spikes: (cells, times ms, weight pA)
    bin_ms: float

    @property
    def n(self) -> int:
        return sum(p[1] for p in self.populations)

    def cells(self, name: str) -> slice:
        return population_cells(self.populations, name)


def population_cells(populations: list[tuple[str, int, str]], name: str) -> slice:
    """The cells of population `name` among (name, n, type) populations numbered in order; ConfigError if none."""
    start = 0
    for pop, n, _ in populations:
        if pop == name:
            return slice(start, start + n)
        start += n
    raise ConfigError(f"population {name!r}: not in the network (it has {[p[0] for p in populations]})")


def network_spec(cfg: Config, where: str, bin_ms: float, seed: int) -> NetSpec:
    """The surrogate network of an engine config; ConfigError naming the field when the surrogates cannot stand
    for it (another model, parameters other than the trained ones, delays off the surrogate's bin, ...)."""
    pops = []
    for i, p in enumerate(cfg.populations):
        if p.model != "hh" or p.params != HHParams().model_dump():
            raise ConfigError(f"{where}: populations.{i} ({p.name}): the surrogate stands for model = \"hh\" with "
                              "default parameters; give model = \"hh\" and no params")
        pops.append((p.name, p.n, p.type))
    spec = NetSpec(pops, [], [], [], bin_ms)
    types = {name: t for name, _, t in pops}
    rng = np.random.default_rng(seed)
    for i, pr in enumerate(cfg.projections):
        if (pr.rule != "fixed_indegree" or pr.delay_dist != "fixed" or pr.weight_dist != "fixed" or pr.scale != "none"
                or pr.plasticity is not None or pr.sign != "auto"):
            raise ConfigError(f"{where}: projections.{i} ({pr.name}): the surrogate network takes rule = "
                              "\"fixed_indegree\" with a fixed weight and delay_ms, no scale, plasticity or sign")
        d = pr.delay_ms / bin_ms
        if abs(d - round(d)) > 1e-6 or round(d) < 1:
            raise ConfigError(f"{where}: projections.{i} ({pr.name}).delay_ms = {pr.delay_ms}: give a whole multiple "
                              f"of the surrogate's bin ({bin_ms} ms)")
        pre, post = spec.cells(pr.pre), spec.cells(pr.post)
        counts = np.zeros((spec.n, spec.n), np.float32)
        n_pre = pre.stop - pre.start
        for j in range(post.stop - post.start):
            own = j if pr.pre == pr.post and not pr.autapses else None
            choices = np.delete(np.arange(n_pre), own) if own is not None else np.arange(n_pre)
            src = rng.choice(choices, pr.k, replace=pr.multapses)
            np.add.at(counts[post.start + j], pre.start + src, 1.0)
        spec.projections.append(Projection(pr.name, pr.pre, pr.post, torch.from_numpy(counts), round(d),
                                           0 if types[pr.pre] == "E" else 1, float(pr.weight)))
    for i, dr in enumerate(cfg.drive):
        if dr.kind == "spikes":
            spec.kicks.append((spec.cells(dr.target), list(dr.times_ms), float(dr.weight)))
        elif dr.kind != "poisson" or dr.start_ms > 0 or dr.stop_ms is not None:
            raise ConfigError(f"{where}: drive.{i}: the surrogate network takes Poisson drives over the whole run "
                              "(kind = \"poisson\", no start_ms or stop_ms) and input spikes (kind = \"spikes\")")
        else:
            spec.drive_pa_per_ms.append((spec.cells(dr.target), dr.indegree * dr.rate_hz / 1000.0, float(dr.weight)))
    return spec


class Stepper:
    """`SurrogateNet.step` as plain matrix products (the same numbers, faster for one bin): each causal convolution
    is one product of its flattened kernel with the inputs at its taps, the LSTM one cell update per layer. The
    state: per convolution its last (kernel - 1) * dilation + 1 inputs, newest last; per LSTM layer (h, c)."""

    def __init__(self, net: Any) -> None:
        self.kernel, self.dilations = net.kernel, net.dilations
        self.convs = [(c.weight.permute(0, 2, 1).reshape(c.out_channels, -1).T, c.bias) for c in net.convs]
        lstm = net.lstm
        self.cells = [(getattr(lstm, f"weight_ih_l{k}").T, getattr(lstm, f"weight_hh_l{k}").T,
                       getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")) for k in range(lstm.num_layers)]
        self.hidden, self.head = lstm.hidden_size, net.head

    def init_state(self, batch: int) -> tuple[list[list[torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
        chans = [w.shape[0] // self.kernel for w, _ in self.convs]
        bufs = [[torch.zeros(batch, c)] * ((self.kernel - 1) * d) for c, d in zip(chans, self.dilations, strict=True)]
        h = torch.zeros(batch, self.hidden)
        return bufs, [(h, h)] * len(self.cells)

    def step(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """One bin: x (B, n_in) -> ((B, 2) = (V, spike logit), the state after it)."""
        bufs, hc = state
        z, new_bufs = x, []
        for (w, b), buf, d in zip(self.convs, bufs, self.dilations, strict=True):
            window = [*buf, z]
            new_bufs.append(window[1:])
            taps = torch.cat(window[::d], dim=1)
            z = torch.relu(taps @ w + b)
        inp, new_hc = torch.cat([z, x], dim=1), []
        for (w_ih, w_hh, b), (h, c) in zip(self.cells, hc, strict=True):
            i, f, g, o = (inp @ w_ih + h @ w_hh + b).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new_hc.append((h, c))
            inp = h
        return self.head(inp), (new_bufs, new_hc)


class SurrogateNetwork(nn.Module):
    """The surrogate network: `theta` (log pA) of the trained projections; the others fixed."""

    weight_key = "weights_pa"  # the trajectory's name of the weights (and their unit)

    def __init__(self, spec: NetSpec, surrogates: dict[str, Surrogate], trained: list[str],
                 spikes: str = "threshold", dampening: float = 1.0) -> None:
        super().__init__()
        self.spec, self.trained, self.soft, self.dampening = spec, trained, spikes == "probability", dampening
        names = [p.name for p in spec.projections]
        self.theta = nn.Parameter(torch.tensor([math.log(spec.projections[names.index(t)].weight_pa)
                                                for t in trained], dtype=torch.float32))
        self.groups, self.threshold = group_cells(spec.populations, surrogates)
        self.logit_threshold = torch.log(self.threshold / (1.0 - self.threshold))

    def weights(self) -> list[torch.Tensor]:
        """Per projection its weight, pA (a tensor of the graph for the trained ones)."""
        w = torch.exp(self.theta)
        return [w[self.trained.index(p.name)] if p.name in self.trained else torch.tensor(p.weight_pa)
                for p in self.spec.projections]

    def named_weights(self) -> dict[str, float]:
        """Per projection its weight, pA."""
        return {p.name: float(w.detach()) for p, w in zip(self.spec.projections, self.weights(), strict=True)}

    def drive(self, bins: int, seed: int) -> torch.Tensor:
        """(bins, N, 2) external input, pA per bin on the E group: Poisson events (torch generator `seed`) and
        input spikes (an input spike at t ms arrives in the bin holding t), times their weights."""
        g = torch.Generator().manual_seed(seed)
        x = torch.zeros(bins, self.spec.n, 2)
        for cells, per_ms, w in self.spec.drive_pa_per_ms:
            lam = torch.full((bins, cells.stop - cells.start), per_ms * self.spec.bin_ms)
            x[:, cells, 0] += torch.poisson(lam, generator=g) * w
        for cells, times, w in self.spec.kicks:
            for t in times:
                if int(t // self.spec.bin_ms) < bins:
                    x[int(t // self.spec.bin_ms), cells, 0] += w
        return x

    def forward(self, bins: int, seed: int) -> torch.Tensor:
        """Simulate `bins` bins from rest; (bins, N) spikes (0/1 forward, surrogate gradient backward; or the
        probabilities themselves with spikes = "probability")."""
        spec, n = self.spec, self.spec.n
        ext = self.drive(bins, seed)
        w = self.weights()
        history = [torch.zeros(n)] * max([p.delay_bins for p in spec.projections], default=1)
        states = [stepper.init_state(len(idx)) for _, stepper, idx in self.groups]
        above = torch.zeros(n, dtype=torch.bool)
        out = []
        for t in range(bins):
            syn = [torch.zeros(n), torch.zeros(n)]
            for p, wp in zip(spec.projections, w, strict=True):
                syn[p.channel] = syn[p.channel] + wp * (p.counts @ history[-p.delay_bins])
            x = torch.stack(syn, dim=1) + ext[t]
            spikes, above = spike_of(step_groups(self.groups, x, states, n), self.logit_threshold, above, self.soft,
                                     self.dampening)
            history = [*history[1:], spikes]
            out.append(spikes)
        return torch.stack(out)

    def clamp(self, lo_pa: float, hi_pa: float) -> None:
        with torch.no_grad():
            self.theta.clamp_(math.log(lo_pa), math.log(hi_pa))


Groups = list[tuple[Surrogate, Stepper, torch.Tensor]]
"""Per distinct surrogate: it, its stepper, the indices of the cells it stands for."""


def group_cells(populations: list[tuple[str, int, str]],
                surrogates: dict[str, Surrogate]) -> tuple[Groups, torch.Tensor]:
    """The cells of each distinct surrogate (populations sharing one surrogate step together), and every cell's
    spike threshold (N,); cells numbered in population order (`population_cells`)."""
    groups: Groups = []
    for name, _, _ in populations:
        cells = population_cells(populations, name)
        s, idx = surrogates[name], torch.arange(cells.start, cells.stop)
        k = next((k for k, g in enumerate(groups) if g[0] is s), None)
        if k is None:
            groups.append((s, Stepper(s.net), idx))
        else:
            groups[k] = (s, groups[k][1], torch.cat([groups[k][2], idx]))
    threshold = torch.empty(sum(p[1] for p in populations))
    for s, _, idx in groups:
        threshold[idx] = s.threshold
    return groups, threshold


def step_groups(groups: Groups, x: torch.Tensor, states: list, n: int) -> torch.Tensor:
    """One bin of every cell: x (N, channels) input (each surrogate reads its first n_in channels, scaled as it was
    trained); `states` (one per group) is updated in place; returns the spike logits (N,)."""
    if len(groups) == 1:
        s, stepper, _ = groups[0]
        y, states[0] = stepper.step(x[:, : len(s.x_scale)] / s.x_scale, states[0])
        return y[:, 1]
    logit = torch.zeros(n)
    for k, (s, stepper, idx) in enumerate(groups):
        y, states[k] = stepper.step(x[idx, : len(s.x_scale)] / s.x_scale, states[k])
        logit = logit.index_put((idx,), y[:, 1])
    return logit


def spike_of(logit: torch.Tensor, logit_threshold: torch.Tensor, above: torch.Tensor,
             soft: bool, dampening: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes (N,), whether each cell is above threshold now). A spike is the first bin of a run at or above
    threshold: exactly 0/1 forward, the SuperSpike surrogate gradient backward, times `dampening` (the dampening
    factor of Bellec et al. 2018, NeurIPS: below 1 it keeps BPTT through strong recurrence from overflowing);
    with `soft`, the probability."""
    if soft:
        return torch.sigmoid(logit), above
    now = logit >= logit_threshold
    u = logit - logit_threshold
    slope = dampening * u / (1.0 + u.abs())  # its derivative dampening / (1 + |u|)^2 is the backward pass
    return (now & ~above).float() + (slope - slope.detach()), now


def population_rate(spikes: torch.Tensor, cells: slice, bin_ms: float) -> torch.Tensor:
    """(bins,) mean rate of the cells, Hz."""
    return spikes[:, cells].mean(dim=1) / (bin_ms / 1000.0)


def spectrum(rate: torch.Tensor, bin_ms: float, segment_ms: float) -> tuple[torch.Tensor, torch.Tensor]:
    return welch(rate, 1000.0 / bin_ms, round(segment_ms / bin_ms))


def gaussian_smoothed(f: torch.Tensor, psd: torch.Tensor, sigma_ms: float) -> torch.Tensor:
    """The PSD of the signal convolved with a unit-area Gaussian of sigma_ms: psd times exp(-(2 pi f sigma)^2)."""
    return psd * torch.exp(-((2 * math.pi * f * sigma_ms / 1000.0) ** 2))


def loss_of(f: torch.Tensor, psd: torch.Tensor, o: NetObjective) -> torch.Tensor:
    """-log(power in the target band / power in total_hz), of the rate smoothed as o.loss_smooth_ms says."""
    if o.loss_smooth_ms > 0:
        psd = gaussian_smoothed(f, psd, o.loss_smooth_ms)
    return -torch.log(band_power(f, psd, o.band_to_hz) / (band_power(f, psd, o.total_hz) + 1e-12) + 1e-12)


def summary(f: np.ndarray, psd: np.ndarray, o: NetObjective) -> dict[str, float]:
    """Peak frequency within total_hz (Hz); `fundamental_hz`, the peak after smoothing the rate with a Gaussian of
    sigma = smooth_ms (the PSD times exp(-(2 pi f sigma)^2)), the fundamental of a train of sharp volleys (whose
    harmonics are nearly as high); the powers in the two bands and in total_hz (Hz^2)."""
    ft, pt = torch.from_numpy(np.asarray(f, np.float64)), torch.from_numpy(np.asarray(psd, np.float64))
    smoothed = gaussian_smoothed(ft, pt, o.smooth_ms).numpy()
    return {"peak_hz": peak_frequency(f, psd, o.total_hz), "fundamental_hz": peak_frequency(f, smoothed, o.total_hz),
            "power_from": float(band_power(ft, pt, o.band_from_hz)),
            "power_to": float(band_power(ft, pt, o.band_to_hz)), "power_total": float(band_power(ft, pt, o.total_hz))}


def optimise(model: SurrogateNetwork, o: NetObjective, s: NetOptimise, bounds: tuple[float, float],
             log: Any = None) -> list[dict[str, Any]]:
    """Adam on the trained log weights for s.steps steps (s.draws drive draws per step, seeds as NetOptimise.seed
    says; the gradient of their mean loss), each kept within `bounds` after every update; per step the mean loss,
    peak frequency and band powers of the draws' mean spectrum, rate and weights (`model.weight_key`) before the
    update (the last entry: after the last update, no update). A loss or gradient that is not finite (BPTT through
    inputs far outside what the surrogates were trained on can overflow) ends the descent there, before any update
    from it: that entry says so under "stopped". The model: SurrogateNetwork or
    eilab.ml.surrogate_hnn_net.HnnSurrogateNetwork (bounds in its weights' unit)."""
    opt = torch.optim.Adam([model.theta], lr=s.lr)
    bin_ms = model.spec.bin_ms
    bins, skip = round(s.t_ms / bin_ms), round(s.skip_ms / bin_ms)
    cells = model.spec.cells(o.population)
    trajectory = []
    for step in range(s.steps + 1):
        opt.zero_grad()
        loss, psds, rates = 0.0, [], []
        for j in range(s.draws):
            spikes = model(bins, s.seed + step * s.draws + j)
            rate = population_rate(spikes, cells, bin_ms)[skip:]
            draw_loss = loss_of(*spectrum(rate, bin_ms, o.segment_ms), o) / s.draws
            if step < s.steps:
                draw_loss.backward()
            loss += float(draw_loss.detach())
            fr, pr = spectrum(rate.detach().double(), bin_ms, min(o.report_segment_ms, (bins - skip) * bin_ms))
            psds.append(pr.numpy())
            rates.append(float(spikes[skip:, cells].detach().mean() / (bin_ms / 1000.0)))
        entry = {"step": step, "loss": loss, **summary(fr.numpy(), np.mean(psds, axis=0), o),
                 "rate_hz": float(np.mean(rates)), model.weight_key: model.named_weights()}
        trajectory.append(entry)
        if step < s.steps and not (math.isfinite(loss) and torch.isfinite(model.theta.grad).all()):
            entry["stopped"] = "the loss or its gradient is not finite: no update from this step"
        if log is not None:
            log(entry)
        if step == s.steps or "stopped" in entry:
            break
        opt.step()
        model.clamp(*bounds)
    return trajectory


# ---------------------------------------------------------------- back to the engine
def with_weights(raw: dict[str, Any], weights: dict[str, float]) -> dict[str, Any]:
    """A copy of the raw engine config with the named projections' weights (pA) replaced."""
    out = json.loads(json.dumps(raw))
    for p in out.get("projections", []):
        if p.get("name") in weights:
            p["weight"] = round(weights[p["name"]], 3)
    return out


def toml_text(raw: dict[str, Any], header: str = "") -> str:
    """TOML of a raw config: scalars and inline values first, then tables, then arrays of tables."""
    lines = [f"# {line}" for line in header.splitlines()]
    scalars = {k: v for k, v in raw.items() if not isinstance(v, dict | list) or not _tables(v)}
    lines += [f"{k} = {_value(v)}" for k, v in scalars.items()]
    for k, v in raw.items():
        if isinstance(v, dict) and _tables(v):
            lines += ["", f"[{k}]", *(f"{kk} = {_value(vv)}" for kk, vv in v.items())]
        elif isinstance(v, list) and _tables(v):
            for item in v:
                lines += ["", f"[[{k}]]", *(f"{kk} = {_value(vv)}" for kk, vv in item.items())]
    return "\n".join(lines) + "\n"


def _tables(v: dict | list) -> bool:
    return isinstance(v, dict) or (bool(v) and all(isinstance(x, dict) for x in v))


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
