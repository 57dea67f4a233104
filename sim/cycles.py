"""A cycle counter readable inside numba kernels (LLVM's readcyclecounter: RDTSC on x86-64).

The step kernels accumulate counter ticks per phase (drive, neuron update, bookkeeping,
delivery) at almost no cost; the engine turns ticks into seconds with the rate measured
against the wall clock over the same run.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _readcyclecounter(typingctx):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(cache=True, inline="always")
def ticks() -> int:
    """Cycle counter now (monotonic within a process on one core; arbitrary origin)."""
    return _readcyclecounter()


@njit(cache=True)
def now() -> int:
    """The cycle counter, callable from Python (to calibrate ticks against the wall clock)."""
    return _readcyclecounter()
