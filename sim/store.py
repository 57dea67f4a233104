"""The Zarr v3 run store: one directory per run, readable with plain zarr or xarray.

    RUN_DIR/run.zarr/
      attrs            format, status (running | complete | failed), config (as given and
                       resolved), seed, dt_ms, t_ms, populations, n_ranks, versions, git commit,
                       timings, summary
      spikes/times_ms  (spike,) float64  emission time: end of the step, ms
      spikes/gids      (spike,) int32    one region per rank per flush, chunk-aligned, padded with
                                         gid -1 / NaN; the reader drops padding and sorts (time, gid)
      counts           (time_bin, neuron) uint16: spikes with time in (k*bin, (k+1)*bin]
      rates            (time_bin, neuron) float32, rate networks instead of spikes and counts: Hz
      time_bin, neuron coordinates: bin start (ms) and gid
      probes/<var>     (time, probe) float32, var in v (mV), syn_e, syn_i, ext (mV/ms)
      probes/time, probes/probe   coordinates: sample time (ms) and gid
      weights/<projection>/<lo>-<hi>/w   (snapshot, synapse) float32 per rank range, plastic projections;
                       times_ms per snapshot; Run.weights() assembles them in canonical order
      checkpoint/{a,b}/state, ring   engine state per gid, two slots written in turn; attrs
                       `checkpoint` names the last complete one (step, spikes stored, totals)

A run is `complete` only when the writer closed it; `open_run` refuses other states unless
asked. Nothing stored is overwritten: an existing run directory needs an explicit `force`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from eilab.sim.config import Config
from eilab.sim.exchange import Comm

FORMAT = "eilab-run/1"
# Each rank writes its own chunks from the simulation loop: one codec thread per rank is enough and
# keeps memory per rank small (zarr's default pool has a thread per core, each with its malloc arena).
zarr.config.set({"threading.max_workers": 1, "async.concurrency": 4})
PROBE_VARS = ("v", "syn_e", "syn_i", "ext")
CHECKPOINT_SLOTS = ("a", "b")
SPIKE_CHUNK = 1 << 20


class RunExistsError(FileExistsError):
    pass


class RunNotCompleteError(RuntimeError):
    pass


def _zarr_path(run_dir: Path) -> Path:
    return run_dir / "run.zarr"


def prepare_run_dir(run_dir: Path, force: bool) -> None:
    """Refuse to overwrite; with force, remove an earlier eilab run (and nothing else)."""
    if not run_dir.exists():
        return
    if not force:
        raise RunExistsError(f"run directory {run_dir} exists; choose another --out or pass --force to replace it")
    if not _zarr_path(run_dir).is_dir():
        raise RunExistsError(f"{run_dir} exists and is not an eilab run directory; not replacing it")
    shutil.rmtree(run_dir)


def create_store(run_dir: Path, cfg: Config, attrs: dict[str, Any], probe_gids: np.ndarray, block: int,
                 n_state: int) -> None:
    """Lay out a new run (one process does this): attributes and every array at its final shape.

    Neuron chunks of `counts` are `block` wide, the partition grid, so each chunk has one writer;
    probe chunks are one probe wide for the same reason.
    """
    run_dir.mkdir(parents=True)
    root = zarr.open_group(_zarr_path(run_dir), mode="w-")
    root.attrs.update({"format": FORMAT, "status": "running", "partition_block": block,
                       "spike_chunk": SPIKE_CHUNK, **attrs})
    n = cfg.n_total
    spikes = root.create_group("spikes", attributes={
        "layout": "one region per rank per flush, padded to whole chunks with gid -1 (time NaN); "
                  "open_run().spikes() drops the padding and sorts by (time, gid)"})
    spikes.create_array("times_ms", shape=(0,), dtype="float64", chunks=(SPIKE_CHUNK,), fill_value=np.nan,
                        dimension_names=["spike"], attributes={"units": "ms"})
    spikes.create_array("gids", shape=(0,), dtype="int32", chunks=(SPIKE_CHUNK,), fill_value=-1,
                        dimension_names=["spike"])
    if cfg.record.counts_bin_ms > 0:
        bin_ms = cfg.record.counts_bin_ms
        n_bins = -(-cfg.steps(cfg.run.t_ms) // cfg.steps(bin_ms))
        rows = max(1, min(n_bins, (1 << 22) // n))  # a rank buffers at most 4 M values per chunk row
        if cfg.is_rate_network:
            root.create_array("rates", shape=(n_bins, n), dtype="float32", chunks=(rows, block),
                              dimension_names=["time_bin", "neuron"], fill_value=np.nan,
                              attributes={"bin_ms": bin_ms, "units": "Hz", "sample": "rate at the end of the bin"})
        else:
            root.create_array("counts", shape=(n_bins, n), dtype="uint16", chunks=(rows, block),
                              dimension_names=["time_bin", "neuron"], fill_value=0,
                              attributes={"bin_ms": bin_ms, "interval": "right-closed: (start, start + bin_ms]"})
        root.create_array("time_bin", data=np.arange(n_bins) * bin_ms, dimension_names=["time_bin"],
                          attributes={"units": "ms"})
        root.create_array("neuron", data=np.arange(n, dtype=np.int32), dimension_names=["neuron"])
    for pr in cfg.projections:
        if pr.plasticity is not None:
            n_rows = len(snapshot_steps(cfg, pr.plasticity.snapshot_every_ms))
            root.create_group(f"weights/{pr.name}").create_array(
                "times_ms", shape=(n_rows,), dtype="float64", fill_value=np.nan, attributes={"units": "ms"})
    if cfg.run.checkpoint_every_ms > 0:
        ck = root.create_group("checkpoint")
        for slot in CHECKPOINT_SLOTS:
            g = ck.create_group(slot)
            g.create_array("state", shape=(n_state, n), dtype="float64", chunks=(n_state, block))
            g.create_array("ring", shape=(2, cfg.max_delay_steps, n), dtype="float64",
                           chunks=(2, cfg.max_delay_steps, block))
    if probe_gids.size:
        every = cfg.steps(cfg.record.probe_every_ms or cfg.run.dt_ms)
        n_samples = cfg.steps(cfg.run.t_ms) // every
        group = root.create_group("probes")
        group.create_array("time", data=(np.arange(n_samples) + 1) * every * cfg.run.dt_ms,
                           dimension_names=["time"], attributes={"units": "ms"})
        group.create_array("probe", data=probe_gids.astype(np.int32), dimension_names=["probe"])
        units = {"v": "mV", "syn_e": "mV/ms", "syn_i": "mV/ms", "ext": "mV/ms"}
        rows = max(1, min(n_samples, 1 << 16))
        for var in PROBE_VARS:
            group.create_array(var, shape=(n_samples, probe_gids.size), dtype="float32", chunks=(rows, 1),
                               dimension_names=["time", "probe"], fill_value=np.nan,
                               attributes={"units": units[var]})


class RowBuffer:
    """Consecutive rows of this rank's columns of a 2-D array, written as whole chunk rows.

    The engine produces rows window by window; buffering them up to chunk-row boundaries means no
    chunk is ever read back and rewritten (and a chunk's only writer is the rank owning its columns).
    """

    def __init__(self, array: Any, cols: slice, first_row: int = 0) -> None:
        self.array, self.cols = array, cols
        self.chunk_rows = array.chunks[0]
        self.start = first_row
        self.parts: list[np.ndarray] = []
        self.n = 0

    def add(self, row0: int, block: np.ndarray) -> None:
        if row0 != self.start + self.n:
            raise ValueError(f"rows must be consecutive: got {row0}, expected {self.start + self.n}")
        self.parts.append(block)
        self.n += block.shape[0]
        boundary = (self.start + self.n) // self.chunk_rows * self.chunk_rows
        if boundary > self.start:
            self._write(boundary - self.start)

    def flush(self) -> None:
        if self.n:
            self._write(self.n)

    def _write(self, k: int) -> None:
        data = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
        self.array[self.start : self.start + k, self.cols] = data[:k]
        self.parts = [data[k:]] if k < self.n else []
        self.start += k
        self.n -= k


class RankWriter:
    """One rank's part of a run: its neurons' counts, its probes, its regions of the spike arrays.

    Spikes are buffered and written in whole chunks; `flush_spikes` is collective: every rank
    calls it, rank 0 grows the arrays, each rank then fills its own chunk-aligned region.
    """

    def __init__(self, run_dir: Path, cfg: Config, comm: Comm, lo: int, hi: int, probe_gids: np.ndarray,
                 stored: int = 0, first_bin: int = 0, first_sample: int = 0, segment: int = 0) -> None:
        self.path = _zarr_path(run_dir)
        self.comm = comm
        self.lo, self.hi = lo, hi
        self.dt = cfg.run.dt_ms
        self.root = zarr.open_group(self.path, mode="r+")
        binned = "rates" if cfg.is_rate_network else "counts"
        self.counts = (RowBuffer(self.root[binned], slice(lo, hi), first_bin)
                       if binned in self.root and hi > lo else None)
        mine = np.flatnonzero((probe_gids >= lo) & (probe_gids < hi))
        self.probe_cols = slice(int(mine[0]), int(mine[-1]) + 1) if mine.size else None
        self.probes = ({var: RowBuffer(self.root[f"probes/{var}"], self.probe_cols, first_sample)
                        for var in PROBE_VARS} if self.probe_cols else {})
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_pending = 0
        self.stored = stored
        self.segment = segment  # 0 for a new run, k after the k-th resume (newer rows win when read)

    def add_spikes(self, steps: np.ndarray, gids: np.ndarray) -> None:
        """Queue spikes emitted at `steps` (time = (step + 1) * dt), in (time, gid) order."""
        if steps.size:
            self.pending.append(((steps + 1) * self.dt, gids.astype(np.int32)))
            self.n_pending += steps.size

    def flush_spikes(self, final: bool = False) -> None:
        """Collective: write every whole chunk of queued spikes (all of them, padded, if final)."""
        c = SPIKE_CHUNK
        mine = -(-self.n_pending // c) if final else self.n_pending // c
        chunks = self.comm.allgather(mine)
        total = sum(chunks)
        if total == 0:
            return
        start = self.stored + c * sum(chunks[: self.comm.rank])
        end = self.stored + c * total
        if self.comm.rank == 0:
            for name in ("times_ms", "gids"):
                self.root[f"spikes/{name}"].resize((end,))
        self.comm.barrier()
        self.stored = end
        if mine == 0:
            return
        times = np.concatenate([t for t, _ in self.pending])
        gids = np.concatenate([g for _, g in self.pending])
        k = min(mine * c, times.size)
        root = zarr.open_group(self.path, mode="r+")  # the arrays' new shape
        # the rest of the region stays at the fill values (time NaN, gid -1): the padding
        root["spikes/times_ms"][start : start + k] = times[:k]
        root["spikes/gids"][start : start + k] = gids[:k]
        self.pending = [(times[k:], gids[k:])] if k < times.size else []
        self.n_pending = times.size - k

    def write_counts(self, bin0: int, block: np.ndarray) -> None:
        """Counts of bins bin0.. for this rank's neurons (windows end on bin edges, so bins come in order)."""
        if self.counts is not None and block.shape[0]:
            self.counts.add(bin0, block)

    def write_probes(self, k0: int, block: np.ndarray) -> None:
        """block[sample, var, probe] for samples k0.. of this rank's probes (gid order)."""
        if block.shape[0] == 0:
            return
        for v, var in enumerate(PROBE_VARS):
            if var in self.probes:
                self.probes[var].add(k0, block[:, v, :])

    def flush(self) -> None:
        """Write every buffered row (checkpoints and the end of the run)."""
        for buf in (self.counts, *self.probes.values()):
            if buf is not None:
                buf.flush()

    def write_weights(self, plastic: list[Any], row: int, n_rows: int, time_ms: float) -> None:
        """Weights of every plastic projection (canonical order) as snapshot `row` of `n_rows`."""
        for pp in plastic:
            group = self.root[f"weights/{pp.name}"]
            sub = group.require_group(f"{self.lo}-{self.hi}")
            sub.attrs.update({"lo": self.lo, "hi": self.hi, "segment": self.segment})
            if "w" not in sub:
                n = max(1, int(pp.post_ptr[-1]))
                sub.create_array("w", shape=(n_rows, n), dtype="float32", chunks=(1, n), fill_value=np.nan)
                sub.create_array("indegree", data=pp.in_degree, chunks=(max(1, pp.in_degree.size),))
            if pp.post_ptr[-1]:
                sub["w"][row] = pp.canonical_weights
            if self.comm.rank == 0:
                group["times_ms"][row] = time_ms

    def checkpoint(self, step: int, state: np.ndarray, ring: np.ndarray, totals: dict[str, Any],
                   plastic: list[Any] = ()) -> None:
        """Collective: everything up to `step` on disk, then this rank's engine state in the free
        slot; the run points at the new slot only once every rank has written (a kill at any moment
        leaves the previous checkpoint intact)."""
        self.flush()
        self.flush_spikes()  # whole chunks; the rest goes into the checkpoint (no padding per checkpoint)
        previous = self.root.attrs.get("checkpoint", {}).get("slot")
        slot = CHECKPOINT_SLOTS[1] if previous == CHECKPOINT_SLOTS[0] else CHECKPOINT_SLOTS[0]
        group = zarr.open_group(self.path, mode="r+")[f"checkpoint/{slot}"]
        if self.hi > self.lo:
            group["state"][:, self.lo : self.hi] = state
            group["ring"][:, :, self.lo : self.hi] = ring
        if self.comm.rank == 0:  # one process replaces the shared groups (an earlier partition's pieces)
            for name in ("plastic", "pending"):
                if name in group:
                    del group[name]
            group.create_group("pending")
            for pp in plastic:
                group.create_group(f"plastic/{pp.name}")
        self.comm.barrier()
        group = zarr.open_group(self.path, mode="r+")[f"checkpoint/{slot}"]
        times = np.concatenate([t for t, _ in self.pending]) if self.pending else np.zeros(0)
        gids = np.concatenate([g for _, g in self.pending]) if self.pending else np.zeros(0, np.int32)
        write_range(group["pending"], self.comm.rank, self.comm.rank + 1, {"times_ms": times, "gids": gids})
        if plastic:
            for pp in plastic:
                pg = group[f"plastic/{pp.name}"]
                write_range(pg, self.lo, self.hi, {"w": pp.canonical_weights, "indegree": pp.in_degree,
                                                   "x_post": pp.x_post, "t_post": pp.t_post})
                if self.comm.rank == 0:
                    for name in ("x_pre", "t_pre"):
                        pg.create_array(name, data=getattr(pp, name), overwrite=True)
        all_totals = self.comm.allgather(totals)
        self.comm.barrier()
        if self.comm.rank == 0:
            summed = {k: np.sum([t[k] for t in all_totals], axis=0).tolist() for k in totals}
            self.root.attrs["checkpoint"] = {"slot": slot, "step": step, "spikes_stored": self.stored, **summed}
        self.comm.barrier()

    def close(self, status: str, **attrs: Any) -> None:
        """Collective: write the last spikes; the run takes `status` once every rank is done."""
        self.flush()
        self.flush_spikes(final=True)
        self.comm.barrier()
        if self.comm.rank == 0:
            self.root.attrs.update({**attrs, "spikes_stored": self.stored, "status": status})
        self.comm.barrier()


def load_plastic(run_dir: Path, slot: str, plastic: list[Any], lo: int, hi: int) -> None:
    """Restore the weights and traces of plastic projections for gids [lo, hi) from a checkpoint slot."""
    root = zarr.open_group(_zarr_path(run_dir), mode="r")
    for pp in plastic:
        pg = root[f"checkpoint/{slot}/plastic/{pp.name}"]
        pp.set_canonical_weights(read_ranges(pg, lo, hi, "w", counts="indegree").astype(np.float32))
        pp.x_post[:] = read_ranges(pg, lo, hi, "x_post")
        pp.t_post[:] = read_ranges(pg, lo, hi, "t_post")
        pp.x_pre[:] = pg["x_pre"][...]
        pp.t_pre[:] = pg["t_pre"][...]


def load_pending_spikes(run_dir: Path, slot: str) -> tuple[np.ndarray, np.ndarray]:
    """Spikes recorded before a checkpoint but not yet in the spike arrays (every rank's)."""
    group = zarr.open_group(_zarr_path(run_dir), mode="r")[f"checkpoint/{slot}/pending"]
    parts = [group[k] for k in group.group_keys()]
    times = np.concatenate([p["times_ms"][...] for p in parts]) if parts else np.zeros(0)
    gids = np.concatenate([p["gids"][...] for p in parts]) if parts else np.zeros(0, np.int32)
    return times, gids.astype(np.int32)


def load_checkpoint(run_dir: Path, lo: int, hi: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The last complete checkpoint: its attributes and the state and ring columns of gids [lo, hi)."""
    root = zarr.open_group(_zarr_path(run_dir), mode="r")
    info = root.attrs.get("checkpoint")
    if not info:
        raise RunNotCompleteError(f"{run_dir}: no checkpoint was written (run.checkpoint_every_ms = 0 or "
                                  "killed before the first); start the run again")
    group = root[f"checkpoint/{info['slot']}"]
    return dict(info), group["state"][:, lo:hi], group["ring"][:, :, lo:hi]


def reopen_for_resume(run_dir: Path, n_ranks: int) -> dict[str, Any]:
    """One process: drop spikes stored after the checkpoint and mark the run running again."""
    root = zarr.open_group(_zarr_path(run_dir), mode="r+")
    info = root.attrs["checkpoint"]
    for name in ("times_ms", "gids"):
        root[f"spikes/{name}"].resize((info["spikes_stored"],))
    resumed = [*root.attrs.get("resumed", []), {"step": info["step"], "n_ranks": n_ranks}]
    root.attrs.update({"status": "running", "resumed": resumed, "n_ranks": n_ranks})
    if "error" in root.attrs:
        del root.attrs["error"]
    return dict(root.attrs)


# ---------------------------------------------------------------- plastic weights
def snapshot_steps(cfg: Config, every_ms: float) -> list[int]:
    """Steps at which weights are stored: 0, every `every_ms`, and the end."""
    total = cfg.steps(cfg.run.t_ms)
    every = cfg.steps(every_ms) if every_ms > 0 else total
    return sorted({*range(0, total, every), total})


def write_range(group: Any, lo: int, hi: int, arrays: dict[str, np.ndarray]) -> None:
    """This rank's arrays for the gids [lo, hi) under group/<lo>-<hi>/ (one writer per name)."""
    sub = group.require_group(f"{lo}-{hi}")
    sub.attrs.update({"lo": lo, "hi": hi})
    for name, data in arrays.items():
        sub.create_array(name, data=data, chunks=(max(1, data.size),), overwrite=True)


def read_ranges(group: Any, lo: int, hi: int, name: str, counts: str | None = None,
                row: int | None = None) -> np.ndarray:
    """Values for gids [lo, hi) assembled from the per-range arrays `name` of a group (written by
    any earlier partition). With `counts`, each gid owns counts[gid] consecutive values (per-range
    in-degrees); `row` picks one row of 2-D arrays from the newest segment (resume) that wrote it."""
    subs = [group[k] for k in group.group_keys()]
    subs = [x for x in subs if name in x and x.attrs["hi"] > lo and x.attrs["lo"] < hi]
    if row is not None:
        written = [x for x in subs if not np.isnan(x[name][row]).all()]
        newest = max((x.attrs.get("segment", 0) for x in written), default=0)
        subs = [x for x in written if x.attrs.get("segment", 0) == newest]
    parts = []
    for sub in sorted(subs, key=lambda x: x.attrs["lo"]):
        a, b = sub.attrs["lo"], sub.attrs["hi"]
        data = sub[name][row] if row is not None else sub[name][...]
        if counts is None:
            parts.append(data[max(lo, a) - a : min(hi, b) - a])
        else:
            offs = np.concatenate([[0], np.cumsum(sub[counts][...], dtype=np.int64)])
            parts.append(data[offs[max(lo, a) - a] : offs[min(hi, b) - a]])
    return np.concatenate(parts) if parts else np.zeros(0)


def mark_failed(run_dir: Path, error: str) -> None:
    """Record a failure (from whichever rank saw it); the run is never `complete` afterwards."""
    zarr.open_group(_zarr_path(run_dir), mode="r+").attrs.update({"status": "failed", "error": error})


# ---------------------------------------------------------------- reading
@dataclass
class Run:
    """A stored run: numpy arrays and metadata (see the module docstring for the layout)."""

    path: Path
    root: zarr.Group

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.root.attrs)

    @property
    def status(self) -> str:
        return self.root.attrs["status"]

    @property
    def config(self) -> Config:
        return Config.model_validate(self.root.attrs["config"])

    @property
    def dt_ms(self) -> float:
        return float(self.root.attrs["dt_ms"])

    @property
    def t_ms(self) -> float:
        return float(self.root.attrs["t_ms"])

    @property
    def populations(self) -> dict[str, dict[str, Any]]:
        """name -> {type, n, gid0}."""
        return {p["name"]: p for p in self.root.attrs["populations"]}

    def gids_of(self, population: str) -> slice:
        p = self.populations[population]
        return slice(p["gid0"], p["gid0"] + p["n"])

    def spikes(self) -> tuple[np.ndarray, np.ndarray]:
        """(times_ms, gids), padding dropped, sorted by time then gid (the same for any rank count)."""
        times, gids = self.root["spikes/times_ms"][:], self.root["spikes/gids"][:]
        keep = gids >= 0
        times, gids = times[keep], gids[keep]
        order = np.lexsort((gids, times))
        return times[order], gids[order]

    @property
    def bin_ms(self) -> float | None:
        for name in ("counts", "rates"):
            if name in self.root:
                return float(self.root[name].attrs["bin_ms"])
        return None

    def counts(self, population: str | None = None) -> np.ndarray:
        """Binned spike counts (time_bin, neuron), optionally one population's columns."""
        if "counts" not in self.root:
            raise KeyError("this run recorded no counts (record.counts_bin_ms = 0)")
        arr = self.root["counts"]
        return arr[:, self.gids_of(population)] if population else arr[:]

    def rates(self, population: str | None = None) -> np.ndarray:
        """Rates (Hz) of a rate-network run at the end of each bin (time_bin, neuron)."""
        if "rates" not in self.root:
            raise KeyError("this run has no rates (a spiking run, or record.counts_bin_ms = 0)")
        arr = self.root["rates"]
        return arr[:, self.gids_of(population)] if population else arr[:]

    def weights(self, projection: str, last: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """Snapshot times (ms) and, per snapshot, the weights of a plastic projection in canonical
        order (targets by gid, each target's synapses by presynaptic index); only the last stored
        snapshot with `last`."""
        group = self.root[f"weights/{projection}"]
        times = group["times_ms"][...]
        rows = [k for k in range(times.size) if not np.isnan(times[k])][-1 if last else 0 :]
        n = int(self.attrs["n_neurons"])
        return times[rows], [read_ranges(group, 0, n, "w", counts="indegree", row=k) for k in rows]

    def probes(self) -> dict[str, np.ndarray]:
        """time (ms), probe (gids) and one (time, probe) array per variable."""
        if "probes" not in self.root:
            return {}
        g = self.root["probes"]
        return {name: g[name][:] for name in ("time", "probe", *PROBE_VARS)}


def open_run(path: str | Path, allow_incomplete: bool = False) -> Run:
    """Open RUN_DIR (or RUN_DIR/run.zarr) for reading; incomplete runs only when asked."""
    p = Path(path)
    zpath = p if p.name == "run.zarr" else _zarr_path(p)
    if not zpath.is_dir():
        raise FileNotFoundError(f"{path}: not an eilab run directory (no run.zarr inside)")
    root = zarr.open_group(zpath, mode="r")
    if root.attrs.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown run format {root.attrs.get('format')!r}")
    run = Run(zpath.parent, root)
    if run.status != "complete" and not allow_incomplete:
        raise RunNotCompleteError(
            f"{path}: run status is {run.status!r}, not 'complete'; pass allow_incomplete=True to read it anyway"
        )
    return run
