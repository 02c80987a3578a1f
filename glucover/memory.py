"""How a glucover process asks the C allocator for memory: set once at start by the `glucover`
command and the benchmarks' own processes."""

from __future__ import annotations

# glibc raises its mmap threshold after each large free, up to 32 MiB, so arrays of a few to
# tens of MiB (a pricing chunk's day grids) land on the heap and its high-water mark stays:
# measured on `bench cgm`'s back-test, peak RSS 5.2 GB with the default, 3.8 GB with 1 MiB.
MMAP_THRESHOLD = 1 << 20
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def fixed_mmap_threshold() -> None:
    """Large arrays straight from mmap and back to the system when freed (glibc only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator decides
