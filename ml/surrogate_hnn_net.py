"""The HNN circuit (Jones et al. 2009, J Neurophysiol 102:3554) as a network of surrogates (issue 19, points 5 and
6): hnn-core's L2/3 and L5 pyramidal and basket cells replaced by their trained TCN-LSTM surrogates, wired as
hnn-core wires them, with one trainable strength per hnn-core connection; and the way back, the optimised
strengths written into hnn-core's connectivity and simulated by NEURON (docs/architecture.md, "Surrogate
networks"). Needs the `detailed` extra.

- **Wiring.** Every hnn-core connection (source type, target type, location, receptor, `nc_dict`) joins its gid
  pairs with hnn-core's distance rule: weight A_weight * gain * exp(-d^2 / (lamtha * inplane)^2) and delay
  A_delay / exp(-d^2 / (lamtha * inplane)^2), d the in-plane distance between the source's and the target's
  positions (`hnn_core.cell.parconnect_from_src`; tests/test_surrogate_hnn_net.py checks every pair against the
  NetCons hnn-core builds in NEURON). A pair reaches the target surrogate's input group of its location and
  receptor (a basket cell's synapses are on its soma), in nS per bin as the
  surrogates were trained (eilab.ml.surrogate_hnn); a spike in bin b arrives in bin b + round(delay / bin).
  Connection names: `SOURCE->TARGET/LOCATION_RECEPTOR`.
- **Drives.** hnn-core's external drives (their connections as above, from the drive cells' positions) with
  the event times hnn-core draws for them (`Network._instantiate_drives`), each drive's `event_seed` offset by
  the simulation's seed (seed 0: hnn-core's own draws), drives without an end ending with the run. An event
  at t arrives at t + delay, in the bin of the surrogate's training data: step round((t + delay) / dt) - 1,
  bin = step // (bin / dt).
- **Strengths.** theta = log(A_weight * gain) per trained connection (nS); the others fixed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from eilab.ml.surrogate_hnn import input_groups, require_hnn
from eilab.ml.surrogate_net import Surrogate, group_cells, population_cells, spike_of, step_groups
from eilab.sim.config import ConfigError

if TYPE_CHECKING:
    from eilab.ml.surrogate_net_config import HnnCircuit

HNN_DT_MS = 0.025  # hnn-core's default step; the surrogates' training data step


@dataclass
class Pairs:
    """The synapses of connections, one entry per (source, target) pair: source and target indices, the
    target's input group, weight (nS) and delay (ms), the connection's index."""

    pre: np.ndarray
    post: np.ndarray
    channel: np.ndarray
    weight_ns: np.ndarray
    delay_ms: np.ndarray
    conn: np.ndarray


@dataclass
class HnnWiring:
    """The HNN circuit as its surrogates see it. Cells are numbered in hnn-core's gid order."""

    net: Any  # the hnn-core Network (drives re-drawn per seed)
    populations: list[tuple[str, int, str]]  # (cell type, n, "E" or "I")
    names: list[str]  # connections between cells
    weight_ns: list[float]  # per connection A_weight * gain, nS
    cells_pairs: Pairs  # pre: cell index
    drive_pairs: Pairs  # pre: index into drive_gids
    drive_gids: list[int]
    bin_ms: float
    channels: int  # the most input groups of any cell type

    @property
    def n(self) -> int:
        return sum(p[1] for p in self.populations)

    def cells(self, name: str) -> slice:
        return population_cells(self.populations, name)

    def drive_events(self, t_ms: float, seed: int) -> list[np.ndarray]:
        """Per drive cell its event times (ms) over t_ms: hnn-core's draws with every event_seed offset by seed."""
        with seeded(self.net, seed, t_ms):
            self.net._instantiate_drives(tstop=t_ms, n_trials=1)
        by_gid = {}
        for name, d in self.net.external_drives.items():
            for k, gid in enumerate(self.net.gid_ranges[name]):
                by_gid[gid] = np.asarray(d["events"][0][k], float)
        return [by_gid[g] for g in self.drive_gids]

    def external(self, bins: int, seed: int) -> np.ndarray:
        """(bins, N, channels) nS per bin: the drives' events arriving on each cell's input groups."""
        p = self.drive_pairs
        events = self.drive_events(bins * self.bin_ms, seed)
        x = np.zeros((bins, self.n, self.channels))
        per_bin = round(self.bin_ms / HNN_DT_MS)
        for k in range(len(p.pre)):
            arrive = events[p.pre[k]] + p.delay_ms[k]
            b = (np.rint(arrive / HNN_DT_MS).astype(np.int64) - 1) // per_bin
            b = b[(b >= 0) & (b < bins)]
            np.add.at(x, (b, p.post[k], p.channel[k]), p.weight_ns[k])
        return x


@contextmanager
def seeded(net: Any, seed: int, t_ms: float) -> Iterator[None]:
    """Within the block every drive's event_seed is offset by `seed` (hnn-core draws the drives' events from it)
    and a drive without an end ends at t_ms (as hnn-core's simulate_dipole sets it)."""
    drives = list(net.external_drives.values())
    base = [(d["event_seed"], d["dynamics"].get("tstop", 0.0)) for d in drives]
    try:
        for d in drives:
            d["event_seed"] += seed
            if "tstop" in d["dynamics"] and d["dynamics"]["tstop"] is None:
                d["dynamics"]["tstop"] = t_ms
        yield
    finally:
        for d, (b, stop) in zip(drives, base, strict=True):
            d["event_seed"] = b
            if "tstop" in d["dynamics"]:
                d["dynamics"]["tstop"] = stop


def channel_of(cell_type: str, sections: list[str], loc: str, receptor: str, where: str) -> int:
    """The surrogate input group of a synapse with `receptor` at `loc` (reaching `sections`) of `cell_type`."""
    pairs = input_groups(cell_type)
    key = ("soma" if sections == ["soma"] else loc, receptor)
    if key not in pairs:
        raise ConfigError(f"{where}: {receptor} at {loc} of {cell_type}: no such input group of its surrogate "
                          f"(it has {[f'{a}_{b}' for a, b in pairs]})")
    return pairs.index(key)


def connection_pairs(net: Any, conn: dict, index: dict[int, int], target_index: dict[int, int]) -> Pairs:
    """The pairs of one hnn-core connection, with hnn-core's distance rule (module docstring); none where the
    location has no sections on the target (hnn-core's L5 basket cell has no distal synapses)."""
    nc = conn["nc_dict"]
    src_type, tgt_type, loc = conn["src_type"], conn["target_type"], conn["loc"]
    template = net.cell_types[tgt_type]["cell_object"]
    sections = list(template.sect_loc[loc]) if loc in template.sect_loc else [loc]
    lam = nc["lamtha"] * net._inplane_distance
    pre, post, w, d = [], [], [], []
    for src, targets in conn["gid_pairs"].items() if sections else ():
        p0 = np.asarray(net.pos_dict[src_type][src - net.gid_ranges[src_type][0]], float)
        for tgt in targets:
            p1 = np.asarray(net.pos_dict[tgt_type][tgt - net.gid_ranges[tgt_type][0]], float)
            g = math.exp(-((p1[0] - p0[0]) ** 2 + (p1[1] - p0[1]) ** 2) / lam**2)
            pre.append(index[src])
            post.append(target_index[tgt])
            w.append(nc["A_weight"] * nc["gain"] * g * 1e3)  # uS -> nS
            d.append(nc["A_delay"] / g)
    ch = channel_of(tgt_type, sections, loc, conn["receptor"], f"{src_type} -> {tgt_type}") if sections else 0
    n = len(pre)
    return Pairs(np.asarray(pre, np.int64), np.asarray(post, np.int64), np.full(n, ch, np.int64),
                 np.asarray(w, float), np.asarray(d, float), np.zeros(n, np.int64))


def concat(parts: list[Pairs]) -> Pairs:
    if not parts:
        return Pairs(*(np.zeros(0, t) for t in (np.int64, np.int64, np.int64, float, float, np.int64)))
    out = Pairs(*(np.concatenate([getattr(p, f) for p in parts]) for f in Pairs.__dataclass_fields__))
    out.conn = np.concatenate([np.full(len(p.pre), k, np.int64) for k, p in enumerate(parts)])
    return out


def connection_name(conn: dict) -> str:
    return f"{conn['src_type']}->{conn['target_type']}/{conn['loc']}_{conn['receptor']}"


def hnn_wiring(net: Any, bin_ms: float) -> HnnWiring:
    """The surrogates' view of an hnn-core Network (its cells, connections and drives)."""
    types = list(net.cell_types)
    pops = [(t, len(net.gid_ranges[t]), "E" if t.endswith("pyramidal") else "I") for t in types]
    cell_index = {g: k for k, g in enumerate(g for t in types for g in net.gid_ranges[t])}
    drive_gids = [g for name in net.external_drives for g in net.gid_ranges[name]]
    drive_index = {g: k for k, g in enumerate(drive_gids)}
    names, weights, cell_parts, drive_parts = [], [], [], []
    for conn in net.connectivity:
        if conn["src_type"] in net.cell_types:
            names.append(connection_name(conn))
            weights.append(conn["nc_dict"]["A_weight"] * conn["nc_dict"]["gain"] * 1e3)
            cell_parts.append(connection_pairs(net, conn, cell_index, cell_index))
        else:
            drive_parts.append(connection_pairs(net, conn, drive_index, cell_index))
    if len(set(names)) != len(names):
        raise ConfigError("the hnn-core network has two connections of one source, target, location and receptor; "
                          "merge them")
    return HnnWiring(net, pops, names, weights, concat(cell_parts), concat(drive_parts), drive_gids, bin_ms,
                     max(len(input_groups(t)) for t in types))


class Delivery:
    """The spikes of the last `depth` bins (newest last) and the input they deliver: a pair with delay d
    (bins, at least 1) carries its source's spike of d bins ago, times its weight."""

    def __init__(self, wiring: HnnWiring, bins: int, weights: torch.Tensor) -> None:
        p, n = wiring.cells_pairs, wiring.n
        delay = np.maximum(np.rint(p.delay_ms / wiring.bin_ms).astype(np.int64), 1)
        keep = delay <= bins  # a pair whose delay outlasts the run delivers nothing within it
        self.depth = int(delay[keep].max()) if keep.any() else 1
        self.source = torch.from_numpy((self.depth - delay[keep]) * n + p.pre[keep])
        self.target = torch.from_numpy(p.post[keep] * wiring.channels + p.channel[keep])
        conn = torch.from_numpy(p.conn[keep])
        base = torch.tensor(wiring.weight_ns, dtype=torch.float64)[conn]
        self.w = (torch.from_numpy(p.weight_ns[keep]) / base).float() * weights[conn]
        self.window = torch.zeros(self.depth, n)

    def arriving(self, ext: torch.Tensor) -> torch.Tensor:
        """(N * channels,) the input of this bin: `ext` plus what the earlier spikes deliver now."""
        return ext.index_add(0, self.target, self.window.reshape(-1)[self.source] * self.w)

    def push(self, spikes: torch.Tensor) -> None:
        """The spikes of this bin, delivered from the next bin on."""
        self.window = torch.cat([self.window[1:], spikes[None]])


class HnnSurrogateNetwork(nn.Module):
    """The HNN circuit of surrogates: `theta` (log nS) of the trained connections' A_weight * gain."""

    weight_key = "weights_ns"

    def __init__(self, wiring: HnnWiring, surrogates: dict[str, Surrogate], trained: list[str],
                 spikes: str = "threshold", dampening: float = 1.0) -> None:
        super().__init__()
        for name in trained:
            if name not in wiring.names:
                raise ConfigError(f"train: no connection {name!r} in the HNN circuit (it has {wiring.names})")
        self.spec, self.trained, self.soft, self.dampening = wiring, trained, spikes == "probability", dampening
        self.theta = nn.Parameter(torch.tensor([math.log(wiring.weight_ns[wiring.names.index(t)]) for t in trained],
                                               dtype=torch.float32))
        self.groups, self.threshold = group_cells(wiring.populations, surrogates)
        self.logit_threshold = torch.log(self.threshold / (1.0 - self.threshold))

    def weights(self) -> torch.Tensor:
        """(connections,) A_weight * gain, nS (the trained ones of the graph)."""
        fixed = torch.tensor(self.spec.weight_ns, dtype=torch.float32)
        if not self.trained:
            return fixed
        at = torch.tensor([self.spec.names.index(t) for t in self.trained])
        return fixed.index_put((at,), torch.exp(self.theta))

    def named_weights(self) -> dict[str, float]:
        """Per connection A_weight * gain, nS."""
        return dict(zip(self.spec.names, self.weights().detach().tolist(), strict=True))

    def forward(self, bins: int, seed: int) -> torch.Tensor:
        """Simulate `bins` bins from rest under the drives of `seed`; (bins, N) spikes (0/1 forward, surrogate
        gradient backward; or the probabilities with spikes = "probability")."""
        n, c = self.spec.n, self.spec.channels
        ext = torch.from_numpy(self.spec.external(bins, seed)).float().reshape(bins, n * c)
        delivery = Delivery(self.spec, bins, self.weights())
        states = [stepper.init_state(len(idx)) for _, stepper, idx in self.groups]
        above = torch.zeros(n, dtype=torch.bool)
        out = []
        for t in range(bins):
            x = delivery.arriving(ext[t]).reshape(n, c)
            spikes, above = spike_of(step_groups(self.groups, x, states, n), self.logit_threshold, above, self.soft,
                                     self.dampening)
            delivery.push(spikes)
            out.append(spikes)
        return torch.stack(out)

    def clamp(self, lo: float, hi: float) -> None:
        with torch.no_grad():
            self.theta.clamp_(math.log(lo), math.log(hi))


def with_hnn_weights(net: Any, weights: dict[str, float]) -> Any:
    """A copy of the hnn-core Network with the named connections' A_weight set so that A_weight * gain is the
    given weight (nS)."""
    out = copy.deepcopy(net)
    for conn in out.connectivity:
        name = connection_name(conn) if conn["src_type"] in out.cell_types else None
        if name in weights:
            conn["nc_dict"]["A_weight"] = weights[name] * 1e-3 / conn["nc_dict"]["gain"]
    return out


def build_circuit(c: HnnCircuit) -> Any:
    """hnn-core's Jones 2009 circuit (`neymotin_2020_model`) on c.mesh_shape, with c.weights_ns and c.drives."""
    require_hnn("the HNN circuit")
    from hnn_core import neymotin_2020_model

    net = neymotin_2020_model(mesh_shape=tuple(c.mesh_shape))
    net._verbose = False
    by_name = {connection_name(conn): conn for conn in net.connectivity}
    for name, w in c.weights_ns.items():
        if name not in by_name:
            raise ConfigError(f"hnn.weights_ns: no connection {name!r} in the HNN circuit (it has {sorted(by_name)})")
        by_name[name]["nc_dict"]["A_weight"] = w * 1e-3 / by_name[name]["nc_dict"]["gain"]
    for d in c.drives:
        targets = sorted({*d.weights_ampa_ns, *d.weights_nmda_ns})
        common = dict(location=d.location, tstart=d.tstart_ms, event_seed=d.event_seed,
                      weights_ampa={t: w * 1e-3 for t, w in d.weights_ampa_ns.items()} or None,
                      weights_nmda={t: w * 1e-3 for t, w in d.weights_nmda_ns.items()} or None,
                      synaptic_delays={t: d.delays_ms.get(t, 0.1) for t in targets})
        if d.kind == "poisson":
            net.add_poisson_drive(d.name, rate_constant={t: d.rate_hz for t in targets}, cell_specific=True, **common)
        else:
            net.add_bursty_drive(d.name, burst_rate=d.rate_hz, burst_std=d.burst_std_ms, numspikes=d.numspikes,
                                 spike_isi=d.spike_isi_ms, n_drive_cells=d.n_drive_cells, **common)
    return net


def simulate_circuit(net: Any, t_ms: float, dt_ms: float, seed: int) -> dict[str, np.ndarray]:
    """One NEURON trial of the circuit over t_ms under the drives of `seed`: spike times (ms) and gids, and the
    dipole (aggregate and L5, nAm, hnn-core's scaling) with its times (ms)."""
    from hnn_core import simulate_dipole

    with seeded(net, seed, t_ms):
        dpl = simulate_dipole(net, tstop=t_ms, dt=dt_ms, n_trials=1)[0]
    return {"spike_times_ms": np.asarray(net.cell_response.spike_times[0], float),
            "spike_gids": np.asarray(net.cell_response.spike_gids[0], np.int64),
            "dipole_t_ms": np.asarray(dpl.times, float), "dipole_agg": np.asarray(dpl.data["agg"], float),
            "dipole_L5": np.asarray(dpl.data["L5"], float)}
