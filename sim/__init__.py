"""Simulation: configs, the engine, neuron kernels and the run store (docs/architecture.md)."""

from eilab.sim.kernel_cache import use_keyed_cache

use_keyed_cache()
