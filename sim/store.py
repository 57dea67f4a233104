"""The Zarr v3 run store: one directory per run, readable with plain zarr or xarray.

    RUN_DIR/run.zarr/
      attrs            format, status (running | complete | failed), config (as given and
                       resolved), seed, dt_ms, t_ms, populations, n_ranks, versions, git commit,
                       timings, summary
      spikes/times_ms  (spike,) float64  emission time: end of the step (precise models: inside it), ms
      spikes/gids      (spike,) int32    one region per rank per flush, chunk-aligned, padded with
                                         gid -1 / NaN; the reader drops padding and sorts (time, gid)
      counts           (time_bin, neuron) uint16: spikes with time in (k*bin, (k+1)*bin]
      drive_counts     (time_bin, neuron) uint32, with record.drive_counts: Poisson drive events of the steps
                       starting in [k*bin, (k+1)*bin)
      rates            (time_bin, neuron) float32, rate networks instead of spikes and counts: Hz
      time_bin, neuron coordinates: bin start (ms) and gid
      probes/<var>     (time, probe) float32, var in v (mV), syn_e, syn_i, ext (mV/ms)
      probes/time, probes/probe   coordinates: sample time (ms) and gid
      weights/<projection>/<lo>-<hi>/w   (snapshot, synapse) per rank range, plastic projections: float32
                       (float64 with plasticity.precision); times_ms per snapshot; Run.weights()
                       assembles them in canonical order
      drive/<i>        float64 samples (pA) of drive i's file, with its name and SHA-256: the run
                       needs the file no more (resume and analysis elsewhere)
      connectivity/W   rate networks with [matrix]: the file's W[post, pre] (before scale), with its
                       name and SHA-256
      checkpoint/{a,b}/state, ring   engine state per gid, two slots written in turn; attrs
                       `checkpoint` names the last complete one (step, spikes stored, totals) and
                       lists every rank's part with CRC-32 checksums, checked before a resume

Every chunk carries a CRC-32C checksum (zarr's crc32c codec), so a damaged chunk fails to
decode; a complete run's attrs `manifest` records the chunk files and bytes of every array,
so `open_run` finds missing or truncated chunks (RunDamagedError, naming the array). A run is
`complete` only when the writer closed it (`interrupted` after SIGTERM or Ctrl-C, `failed` on
an error); `open_run` refuses other states unless asked. Run directories: see rundir.py.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from eilab.sim.config import Config
from eilab.sim.exchange import Comm
from eilab.sim.grid import TimeGrid
from eilab.sim.interrupt import Interrupted
from eilab.sim.reader import (
    FORMAT,
    PROBE_VARS,
    RunNotCompleteError,
    chunk_manifest,
    read_ranges,
    zarr_path,
)
from eilab.sim.rundir import free_reserve

CHECKPOINT_SLOTS = ("a", "b")
SPIKE_CHUNK = 1 << 20
COMPRESSORS = (ZstdCodec(level=0), Crc32cCodec())  # every chunk checksummed


class CheckpointError(RunNotCompleteError):
    """A checkpoint is missing, partial or damaged."""


class StorageError(RuntimeError):
    """Writing the run failed (a full disk, a file system gone); the message says whether it is marked failed."""


def writer_settings() -> None:
    """Zarr settings of a writing process: each rank writes its own chunks from the simulation loop, so one
    codec thread per rank is enough and keeps memory per rank small (zarr's default pool has a thread per
    core, each with its malloc arena). Set where the writer runs, never on import."""
    zarr.config.set({"threading.max_workers": 1, "async.concurrency": 4})


def create_store(run_dir: Path, cfg: Config, attrs: dict[str, Any], probe_gids: np.ndarray, block: int,
                 n_state: int, drive_samples: dict[int, np.ndarray]) -> None:
    """Lay out a new run (one process does this): attributes and every array at its final shape.

    Neuron chunks of `counts` are `block` wide, the partition grid, so each chunk has one writer;
    probe chunks are one probe wide for the same reason.
    """
    writer_settings()
    grid = TimeGrid.of(cfg)
    root = zarr.open_group(zarr_path(run_dir), mode="w-")
    root.update_attributes({"format": FORMAT, "status": "running", "partition_block": block,
                            "spike_chunk": SPIKE_CHUNK, **attrs})  # one write of zarr.json (attrs.update: one a key)
    n = cfg.n_total
    spikes = root.create_group("spikes", attributes={
        "layout": "one region per rank per flush, padded to whole chunks with gid -1 (time NaN); "
                  "open_run().spikes() drops the padding and sorts by (time, gid)"})
    new_array(spikes, "times_ms", shape=(0,), dtype="float64", chunks=(SPIKE_CHUNK,), fill_value=np.nan,
              dimension_names=["spike"], attributes={"units": "ms"})
    new_array(spikes, "gids", shape=(0,), dtype="int32", chunks=(SPIKE_CHUNK,), fill_value=-1,
              dimension_names=["spike"])
    if cfg.record.counts_bin_ms > 0:
        bin_ms = cfg.record.counts_bin_ms
        n_bins = grid.n_bins
        rows = max(1, min(n_bins, (1 << 22) // n))  # a rank buffers at most 4 M values per chunk row
        if cfg.is_rate_network:
            new_array(root, "rates", shape=(n_bins, n), dtype="float32", chunks=(rows, block),
                      dimension_names=["time_bin", "neuron"], fill_value=np.nan,
                      attributes={"bin_ms": bin_ms, "units": "Hz", "sample": "rate at the end of the bin"})
        else:
            new_array(root, "counts", shape=(n_bins, n), dtype="uint16", chunks=(rows, block),
                      dimension_names=["time_bin", "neuron"], fill_value=0,
                      attributes={"bin_ms": bin_ms, "interval": "right-closed: (start, start + bin_ms]"})
        if cfg.record.drive_counts:
            new_array(root, "drive_counts", shape=(n_bins, n), dtype="uint32", chunks=(rows, block),
                      dimension_names=["time_bin", "neuron"], fill_value=0,
                      attributes={"bin_ms": bin_ms, "units": "Poisson drive events",
                                  "interval": "steps whose start lies in [start, start + bin_ms)"})
        new_array(root, "time_bin", data=np.arange(n_bins) * bin_ms, dimension_names=["time_bin"],
                  attributes={"units": "ms"})
        new_array(root, "neuron", data=np.arange(n, dtype=np.int32), dimension_names=["neuron"])
    for i, samples in drive_samples.items():  # self-contained: a resume or analysis elsewhere needs no file
        d = cfg.drive[i]
        new_array(root.require_group("drive"), str(i), data=samples, attributes={
            "file": d.file, "sha256": hashlib.sha256(samples.tobytes()).hexdigest(), "units": "pA",
            "dt_ms": d.file_dt_ms})
    for pr in cfg.projections:
        if pr.plasticity is not None:
            n_rows = len(grid.snapshots(pr.plasticity.snapshot_every_ms))
            new_array(root.create_group(f"weights/{pr.name}"),
                      "times_ms", shape=(n_rows,), dtype="float64", fill_value=np.nan, attributes={"units": "ms"})
    if cfg.run.checkpoint_every_ms > 0:
        ck = root.create_group("checkpoint")
        for slot in CHECKPOINT_SLOTS:
            g = ck.create_group(slot)
            new_array(g, "state", shape=(n_state, n), dtype="float64", chunks=(n_state, block))
            new_array(g, "ring", shape=(2, cfg.max_delay_steps, n), dtype=cfg.run.ring_precision,
                      chunks=(2, cfg.max_delay_steps, block))
    if probe_gids.size:
        every, n_samples = grid.probe_every, grid.n_samples
        group = root.create_group("probes")
        new_array(group, "time", data=(np.arange(n_samples) + 1) * every * cfg.run.dt_ms,
                  dimension_names=["time"], attributes={"units": "ms"})
        new_array(group, "probe", data=probe_gids.astype(np.int32), dimension_names=["probe"])
        units = {"v": "mV", "syn_e": "mV/ms", "syn_i": "mV/ms", "ext": "mV/ms"}
        rows = max(1, min(n_samples, 1 << 16))
        for var in PROBE_VARS:
            new_array(group, var, shape=(n_samples, probe_gids.size), dtype="float32", chunks=(rows, 1),
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
        writer_settings()
        self.path = zarr_path(run_dir)
        self.comm = comm
        self.lo, self.hi = lo, hi
        self.dt = cfg.run.dt_ms
        self.root = zarr.open_group(self.path, mode="r+")
        binned = "rates" if cfg.is_rate_network else "counts"
        self.counts = (RowBuffer(self.root[binned], slice(lo, hi), first_bin)
                       if binned in self.root and hi > lo else None)
        self.drive = (RowBuffer(self.root["drive_counts"], slice(lo, hi), first_bin)
                      if "drive_counts" in self.root and hi > lo else None)
        mine = np.flatnonzero((probe_gids >= lo) & (probe_gids < hi))
        self.probe_cols = slice(int(mine[0]), int(mine[-1]) + 1) if mine.size else None
        self.probes = ({var: RowBuffer(self.root[f"probes/{var}"], self.probe_cols, first_sample)
                        for var in PROBE_VARS} if self.probe_cols else {})
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_pending = 0
        self.stored = stored
        self.segment = segment  # 0 for a new run, k after the k-th resume (newer rows win when read)
        self.last_slot = self.root.attrs.get("checkpoint", {}).get("slot")  # all ranks read it before writing

    def add_spikes(self, steps: np.ndarray, gids: np.ndarray, offsets: np.ndarray) -> None:
        """Queue spikes emitted in `steps`, in (step, gid) order: at the end of the step (time (step + 1) dt) or,
        where the offset is not negative (precise models), at step dt + offset (ms)."""
        if steps.size:
            times = (steps + 1) * self.dt
            precise = offsets >= 0.0
            if precise.any():
                times[precise] = steps[precise] * self.dt + offsets[precise]
            self.pending.append((times, gids.astype(np.int32)))
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

    def write_counts(self, bin0: int, block: np.ndarray, drive: np.ndarray | None = None) -> None:
        """Counts (and drive events) of bins bin0.. for this rank's neurons (windows end on bin edges, so bins
        come in order)."""
        if self.counts is not None and block.shape[0]:
            self.counts.add(bin0, block)
        if self.drive is not None and drive is not None and drive.shape[0]:
            self.drive.add(bin0, drive)

    def write_probes(self, k0: int, block: np.ndarray) -> None:
        """block[sample, var, probe] for samples k0.. of this rank's probes (gid order)."""
        if block.shape[0] == 0:
            return
        for v, var in enumerate(PROBE_VARS):
            if var in self.probes:
                self.probes[var].add(k0, block[:, v, :])

    def flush(self) -> None:
        """Write every buffered row (checkpoints and the end of the run)."""
        for buf in (self.counts, self.drive, *self.probes.values()):
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
                new_array(sub, "w", shape=(n_rows, n), dtype=pp.w.dtype, chunks=(1, n), fill_value=np.nan)
                new_array(sub, "indegree", data=pp.in_degree, chunks=(max(1, pp.in_degree.size),))
            if pp.post_ptr[-1]:
                sub["w"][row] = pp.canonical_weights
            if self.comm.rank == 0:
                group["times_ms"][row] = time_ms

    def checkpoint(self, step: int, state: np.ndarray, ring: np.ndarray, totals: dict[str, Any],
                   plastic: list[Any] = ()) -> None:
        """Collective: everything up to `step` on disk, then this rank's engine state in the free
        slot; the run points at the new slot only once every rank has written its part and its
        checksums (a kill at any moment leaves the previous checkpoint intact)."""
        self.flush()
        self.flush_spikes()  # whole chunks; the rest goes into the checkpoint (no padding per checkpoint)
        slot = CHECKPOINT_SLOTS[1] if self.last_slot == CHECKPOINT_SLOTS[0] else CHECKPOINT_SLOTS[0]
        slot = self.comm.bcast(slot)  # every rank writes the same slot
        fault_point("checkpoint-start", self.comm.rank)
        group = zarr.open_group(self.path, mode="r+")[f"checkpoint/{slot}"]
        if self.hi > self.lo:
            group["state"][:, self.lo : self.hi] = state
            group["ring"][:, :, self.lo : self.hi] = ring
        fault_point("checkpoint-state", self.comm.rank)
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
        pending = {"times_ms": times, "gids": gids}
        write_range(group["pending"], self.comm.rank, self.comm.rank + 1, pending)
        part = {"rank": self.comm.rank, "lo": self.lo, "hi": self.hi, "slot": slot, "step": step,
                "state": crc(state), "ring": crc(ring), "pending": {k: crc(v) for k, v in pending.items()},
                "plastic": {}}
        for pp in plastic:
            pg = group[f"plastic/{pp.name}"]
            arrays = {"w": pp.canonical_weights, "indegree": pp.in_degree, "x_post": pp.x_post, "t_post": pp.t_post}
            write_range(pg, self.lo, self.hi, arrays)
            if self.comm.rank == 0:
                for name in ("x_pre", "t_pre"):
                    new_array(pg, name, data=getattr(pp, name), overwrite=True)
                    arrays[name] = getattr(pp, name)
            part["plastic"][pp.name] = {k: crc(v) for k, v in arrays.items()}
        fault_point("checkpoint-parts", self.comm.rank)
        parts = self.comm.allgather(part)
        all_totals = self.comm.allgather(totals)
        self.comm.barrier()
        if self.comm.rank == 0:
            summed = {k: np.sum([t[k] for t in all_totals], axis=0).tolist() for k in totals}
            update_run_attrs(self.path, {"checkpoint": {"slot": slot, "step": step, "spikes_stored": self.stored,
                                                        **summed, "parts": parts}})
        self.last_slot = slot
        self.comm.barrier()
        fault_point("checkpoint-done", self.comm.rank)

    def close(self, status: str, **attrs: Any) -> None:
        """Collective: write the last spikes; the run takes `status` and `attrs` once every rank is done (a
        complete run also records its manifest of chunk files), unless another process set its status
        meanwhile (update_run_attrs)."""
        self.flush()
        self.flush_spikes(final=True)
        self.comm.barrier()
        if self.comm.rank == 0:
            manifest = {"manifest": chunk_manifest(self.path)} if status == "complete" else {}
            update_run_attrs(self.path, {**manifest, "spikes_stored": self.stored}, status, attrs)
        self.comm.barrier()


def update_run_attrs(path: Path, attrs: dict[str, Any], status: str | None = None,
                     status_attrs: dict[str, Any] | None = None) -> None:
    """Update the root attributes of the store at `path` as they are on disk now, not as this process read them
    when it opened the store: another process may have changed them since (`eilab tune` marks a trial that Ray
    Tune stopped `pruned` while its worker still runs). `status` and the attributes that go with it
    (`status_attrs`) are written only while the stored status is `running`; a status another process set
    stays."""
    root = zarr.open_group(path, mode="r+")
    if status is not None and root.attrs.get("status") == "running":
        attrs = {**(status_attrs or {}), **attrs, "status": status}
    root.update_attributes(attrs)


def new_array(group: Any, name: str, **kwargs: Any) -> Any:
    """group.create_array with every chunk checksummed (CRC-32C)."""
    return group.create_array(name, compressors=COMPRESSORS, **kwargs)


def write_matrix(run_dir: Path, w: np.ndarray, file: str, sha256: str) -> None:
    """Store a rate network's `matrix.file` W[post, pre] (weight units, before matrix.scale) as
    connectivity/W with the file's name and SHA-256: the run needs the file no more."""
    group = zarr.open_group(zarr_path(run_dir), mode="r+").require_group("connectivity")
    new_array(group, "W", data=w, dimension_names=["post", "pre"],
              attributes={"file": file, "sha256": sha256, "units": "weight units, before matrix.scale"})


def crc(a: np.ndarray) -> int:
    """CRC-32 of an array's bytes (C order)."""
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).ravel())


def fault_point(name: str, rank: int) -> None:
    """Fault injection for the kill-and-resume tests: with EILAB_KILL_AT="<name>:<k>[:<rank>]" in the
    environment, the process (of that rank) kills itself with SIGKILL the k-th time it passes `name`
    (counting from 1). Points: checkpoint-start, -state, -parts, -done, and chunk (a window's end)."""
    spec = os.environ.get("EILAB_KILL_AT")
    if not spec:
        return
    want, k, *who = spec.split(":")
    if want != name or (who and int(who[0]) != rank):
        return
    _PASSES[name] = _PASSES.get(name, 0) + 1
    if _PASSES[name] == int(k):
        os.kill(os.getpid(), 9)


_PASSES: dict[str, int] = {}


def load_plastic(run_dir: Path, slot: str, plastic: list[Any], lo: int, hi: int) -> None:
    """Restore the weights and traces of plastic projections for gids [lo, hi) from a checkpoint slot."""
    root = zarr.open_group(zarr_path(run_dir), mode="r")
    for pp in plastic:
        pg = root[f"checkpoint/{slot}/plastic/{pp.name}"]
        pp.set_canonical_weights(read_ranges(pg, lo, hi, "w", counts="indegree").astype(pp.w.dtype))
        pp.x_post[:] = read_ranges(pg, lo, hi, "x_post")
        pp.t_post[:] = read_ranges(pg, lo, hi, "t_post")
        pp.x_pre[:] = pg["x_pre"][...]
        pp.t_pre[:] = pg["t_pre"][...]


def load_pending_spikes(run_dir: Path, slot: str) -> tuple[np.ndarray, np.ndarray]:
    """Spikes recorded before a checkpoint but not yet in the spike arrays (every rank's)."""
    group = zarr.open_group(zarr_path(run_dir), mode="r")[f"checkpoint/{slot}/pending"]
    parts = [group[k] for k in group.group_keys()]
    times = np.concatenate([p["times_ms"][...] for p in parts]) if parts else np.zeros(0)
    gids = np.concatenate([p["gids"][...] for p in parts]) if parts else np.zeros(0, np.int32)
    return times, gids.astype(np.int32)


def checkpoint_info(run_dir: Path) -> dict[str, Any]:
    """The attributes of the last complete checkpoint, or CheckpointError."""
    info = zarr.open_group(zarr_path(run_dir), mode="r").attrs.get("checkpoint")
    if not info:
        raise CheckpointError(f"{run_dir}: no checkpoint was written (run.checkpoint_every_ms = 0 or "
                              "killed before the first); start the run again")
    if "parts" not in info:
        raise CheckpointError(f"{run_dir}: the checkpoint has no checksums (written by an older eilab) and cannot "
                              "be verified; start the run again")
    return dict(info)


def verify_checkpoint(run_dir: Path, info: dict[str, Any], rank: int = 0, size: int = 1) -> list[str]:
    """Problems with the parts of a checkpoint that this rank checks (every size-th part): each part
    written into the named slot at the named step, together covering every gid, each array's
    CRC-32 as written. An empty list means the checkpoint is whole."""
    root = zarr.open_group(zarr_path(run_dir), mode="r")
    slot, step, parts = info["slot"], info["step"], info["parts"]
    problems = []
    edges = sorted((p["lo"], p["hi"]) for p in parts if p["hi"] > p["lo"])
    end = 0
    for a, b in edges:
        end = b if a == end else -1
    if end != int(root.attrs["n_neurons"]):
        problems.append(f"the ranks' parts {edges} do not cover every gid once")
    group = root[f"checkpoint/{slot}"]
    for part in parts[rank::size]:
        who = f"rank {part['rank']} (gids {part['lo']}-{part['hi']})"
        if part["slot"] != slot or part["step"] != step:
            problems.append(f"{who} wrote slot {part['slot']} at step {part['step']}, not slot {slot} at {step}")
            continue
        lo, hi = part["lo"], part["hi"]
        checks = [("state", group["state"][:, lo:hi], part["state"]),
                  ("ring", group["ring"][:, :, lo:hi], part["ring"])] if hi > lo else []
        sub = f"{part['rank']}-{part['rank'] + 1}"
        for name, want in part["pending"].items():
            have = group[f"pending/{sub}/{name}"][...] if f"pending/{sub}/{name}" in group else None
            checks.append((f"pending/{name}", have, want))
        for proj, crcs in part["plastic"].items():
            pg = group[f"plastic/{proj}"]
            for name, want in crcs.items():
                path = name if name in ("x_pre", "t_pre") else f"{lo}-{hi}/{name}"
                checks.append((f"plastic/{proj}/{name}", pg[path][...] if path in pg else None, want))
        for name, data, want in checks:
            if data is None or crc(data) != want:
                problems.append(f"{who}: {name} {'missing' if data is None else 'differs from its checksum'}")
    return problems


def load_checkpoint(run_dir: Path, slot: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The state and ring columns of gids [lo, hi) in a checkpoint slot."""
    group = zarr.open_group(zarr_path(run_dir), mode="r")[f"checkpoint/{slot}"]
    return group["state"][:, lo:hi], group["ring"][:, :, lo:hi]


def reopen_for_resume(run_dir: Path, n_ranks: int, rank_bounds: list[int]) -> dict[str, Any]:
    """One process: drop spikes stored after the checkpoint and mark the run running again."""
    root = zarr.open_group(zarr_path(run_dir), mode="r+")
    info = root.attrs["checkpoint"]
    for name in ("times_ms", "gids"):
        root[f"spikes/{name}"].resize((info["spikes_stored"],))
    resumed = [*root.attrs.get("resumed", []), {"step": info["step"], "n_ranks": n_ranks}]
    root.update_attributes({"status": "running", "resumed": resumed, "n_ranks": n_ranks, "rank_bounds": rank_bounds})
    if "error" in root.attrs:
        del root.attrs["error"]
    return dict(root.attrs)


# ---------------------------------------------------------------- plastic weights
def write_range(group: Any, lo: int, hi: int, arrays: dict[str, np.ndarray]) -> None:
    """This rank's arrays for the gids [lo, hi) under group/<lo>-<hi>/ (one writer per name)."""
    sub = group.require_group(f"{lo}-{hi}")
    sub.attrs.update({"lo": lo, "hi": hi})
    for name, data in arrays.items():
        new_array(sub, name, data=data, chunks=(max(1, data.size),), overwrite=True)


def close_on_error(writer: RankWriter, run_dir: Path, rank: int, error: BaseException | None) -> None:
    """How a run leaves its `with` block (Simulation, RateSimulation): a signal closes it `interrupted`
    (collective), a full disk or another OSError marks it failed and raises StorageError saying so, any
    other error marks it failed; no error: nothing to do."""
    if isinstance(error, Interrupted):
        writer.close("interrupted", interrupted={"signal": error.signum, "time_ms": error.time_ms,
                                                 "checkpointed": error.checkpointed})
    elif isinstance(error, OSError):
        marked = mark_failed(run_dir, f"rank {rank}: {type(error).__name__}: {error}")
        raise StorageError(f"writing {run_dir} failed on rank {rank}: {error.strerror or error}; "
                           + ("the run is marked failed" if marked else "the run could not be marked failed either")
                           ) from None
    elif error is not None:
        mark_failed(run_dir, f"rank {rank}: {type(error).__name__}: {error}")


def mark_failed(run_dir: Path, error: str) -> bool:
    """Record a failure (from whichever rank saw it); the run is never `complete` afterwards. On a full
    disk the writer's reserve is freed first; returns whether the status could be written."""
    for attempt in range(2):
        try:
            zarr.open_group(zarr_path(run_dir), mode="r+").update_attributes({"status": "failed", "error": error})
            return True
        except OSError:
            if attempt == 0:
                free_reserve(run_dir)
    return False


