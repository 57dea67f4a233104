"""Counter-based random numbers keyed by (seed, purpose, gid, counter).

Every draw in eilab is a pure function of its key, so any rank can reproduce exactly the
numbers another partition would use (Salmon et al. 2011's idea, with SplitMix64 as the
bijective mixer). No generator state is carried between draws.

The streams, one family per purpose (the only place they are defined):

    purpose             key                                    counter
    connect (1)         (seed, connect | crc32(projection      position in the neuron's draw
                        name), postsynaptic gid)               sequence (network.py)
    poisson (2)         (drive_seed, poisson, gid)             64 x step (+ sub-draws, step.py); drive_seed
                                                               is run.drive_seed, default run.seed
    init (3)            (seed, init, gid)                      2 x variable index (models.py)
    weight (4)          (seed, weight | crc32(projection       position in the neuron's weight draws
                        name), postsynaptic gid)               (weights.py; only with a weight_dist)
    delay (5)           (seed, delay | crc32(projection        position in the neuron's delay draws
                        name), postsynaptic gid)               (weights.py; only with a delay_dist)

Connectivity is keyed by the projection's name, not its place in the config, so reordering
projections (or adding one) leaves every other projection's synapses unchanged. A population has
at most one Poisson drive, so its stream needs no drive name.
"""

import zlib

import numpy as np
from numba import njit, uint64

PURPOSE_CONNECT = 1
PURPOSE_POISSON = 2
PURPOSE_INIT = 3
PURPOSE_WEIGHT = 4
PURPOSE_DELAY = 5


def named_purpose(purpose: int, name: str) -> int:
    """The purpose word of a named stream family: purpose in the high 32 bits, crc32(name) below."""
    return (purpose << 32) | zlib.crc32(name.encode())

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def mix(x: uint64) -> uint64:
    """SplitMix64 finaliser: a bijection of 64-bit words with full avalanche."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def stream_key(seed: int, purpose: int, gid: int) -> uint64:
    """Key of the stream (seed, purpose, gid); combine with a counter in `draw`."""
    k = mix(np.uint64(seed))
    k = mix(k ^ np.uint64(purpose))
    return mix(k ^ np.uint64(gid))


@njit(cache=True, inline="always")
def counter_word(counter: int) -> uint64:
    """The mixed counter of `draw`; hoist it out of loops over many streams at one counter."""
    return mix(np.uint64(counter))


@njit(cache=True, inline="always")
def draw_at(key: uint64, word: uint64) -> uint64:
    """64 random bits of stream `key` at the counter whose `counter_word` is `word`."""
    return mix(key ^ word)


@njit(cache=True, inline="always")
def draw(key: uint64, counter: int) -> uint64:
    """64 random bits for position `counter` of the stream `key`."""
    return draw_at(key, counter_word(counter))


@njit(cache=True, inline="always")
def uniform(key: uint64, counter: int) -> float:
    """Uniform double in [0, 1) with 53 random bits."""
    return float(draw(key, counter) >> np.uint64(11)) * _TWO53


@njit(cache=True, inline="always")
def below(key: uint64, counter: int, n: int) -> int:
    """Integer uniform in [0, n) (Lemire's multiply-shift on 32 bits, n < 2**32)."""
    hi = draw(key, counter) >> np.uint64(32)
    return int((hi * np.uint64(n)) >> np.uint64(32))


@njit(cache=True, inline="always")
def _lgamma1p(k: int) -> float:
    """log(k!) via Stirling's series for k >= 10, exact sum below."""
    if k < 10:
        s = 0.0
        for i in range(2, k + 1):
            s += np.log(i)
        return s
    x = k + 1.0
    return (x - 0.5) * np.log(x) - x + 0.5 * np.log(2.0 * np.pi) + 1.0 / (12.0 * x) - 1.0 / (360.0 * x**3)


TABLE_MAX_MU = 10.0
TABLE_LEN = 64


def poisson_table(mu: float) -> tuple[np.ndarray, np.ndarray]:
    """CDF and guide table (Chen & Asau 1974) of Poisson(mu) for the inverse-CDF sampler.

    Exact up to float64 rounding for mu < TABLE_MAX_MU (the tail beyond TABLE_LEN is < 1e-20).
    """
    cdf = np.ones(TABLE_LEN)
    guide = np.zeros(TABLE_LEN, np.int64)
    if 0.0 < mu < TABLE_MAX_MU:
        k = np.arange(TABLE_LEN)
        logp = -mu + k * np.log(mu) - np.cumsum(np.log(np.maximum(k, 1)))
        cdf = np.minimum(np.cumsum(np.exp(logp)), 1.0)
        cdf[-1] = 1.0
        guide = np.searchsorted(cdf, np.arange(TABLE_LEN) / TABLE_LEN, side="left")
    return cdf, guide


@njit(cache=True, inline="always")
def poisson_word(counter: int) -> uint64:
    """`counter_word` of the first draw `poisson` makes at step `counter` (for `poisson_tabled`)."""
    return counter_word(counter * 64)


@njit(cache=True, inline="always")
def poisson_tabled(key: uint64, word: uint64, cdf, guide) -> int:
    """Poisson sample by guided inverse CDF: one uniform, about one comparison; `word` is
    `poisson_word(step)`, the same for every stream, so the sample equals `poisson`'s."""
    u = float(draw_at(key, word) >> np.uint64(11)) * _TWO53
    k = guide[int(u * TABLE_LEN)]
    while u > cdf[k]:
        k += 1
    return k


@njit(cache=True)
def poisson(key: uint64, counter: int, mu: float) -> int:
    """Poisson(mu) sample from the stream `key` at step `counter`, any mu.

    Inverse CDF by sequential search for mu < 10 (use `poisson_tabled` in hot loops);
    Hörmann's PTRS transformed rejection above, which consumes further uniforms at
    sub-counters of the same step.
    """
    if mu <= 0.0:
        return 0
    base = counter * 64
    if mu < TABLE_MAX_MU:
        u = uniform(key, base)
        p = np.exp(-mu)
        s = p
        k = 0
        while u > s and k < TABLE_LEN - 1:
            k += 1
            p *= mu / k
            s += p
        return k
    smu = np.sqrt(mu)
    b = 0.931 + 2.53 * smu
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    log_mu = np.log(mu)
    for j in range(31):
        u = uniform(key, base + 2 * j) - 0.5
        v = uniform(key, base + 2 * j + 1)
        us = 0.5 - abs(u)
        k = int(np.floor((2.0 * a / us + b) * u + mu + 0.43))
        if us >= 0.07 and v <= v_r:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if np.log(v) + np.log(inv_alpha) - np.log(a / (us * us) + b) <= -mu + k * log_mu - _lgamma1p(k):
            return k
    return int(mu + 0.5)


@njit(cache=True)
def keys_for(seed: int, purpose: int, gid0: int, n: int) -> np.ndarray:
    """Stream keys of gids gid0 .. gid0 + n - 1."""
    out = np.empty(n, np.uint64)
    for k in range(n):
        out[k] = stream_key(seed, purpose, gid0 + k)
    return out


@njit(cache=True)
def uniforms_for(seed: int, purpose: int, gid0: int, n: int, counter: int) -> np.ndarray:
    """One uniform [0, 1) per gid gid0 .. gid0 + n - 1, at position `counter` of each stream."""
    out = np.empty(n)
    for k in range(n):
        out[k] = uniform(stream_key(seed, purpose, gid0 + k), counter)
    return out
