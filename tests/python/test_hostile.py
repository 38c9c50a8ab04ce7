"""A buggy or hostile peer, and a process at its limits: xmem's own errors, never a crash or a plain ValueError."""

import os
import subprocess
import sys
import textwrap

import pytest

import xmem

from conftest import SHM_DIR

SLOT_SIZE = 512
SIZE_FIELD = 8  # SlotRecord.Size (docs/layout.md)


def slot_table_offset(capacity):
    hints = ((capacity + 63) // 64) * 8
    hints = (hints + 63) // 64 * 64
    return (20480 + hints + 4095) // 4096 * 4096


def forge_size(name, capacity, slot, size):
    """Writes slot `slot`'s Size field through the control segment's file, as another process could."""
    fd = os.open(os.path.join(SHM_DIR, "xmem.v1." + name), os.O_RDWR)
    try:
        off = slot_table_offset(capacity) + slot * SLOT_SIZE + SIZE_FIELD
        os.pwrite(fd, size.to_bytes(8, "little", signed=True), off)
    finally:
        os.close(fd)


@pytest.mark.parametrize("forged", [0, -1, -(2**63), 4097])
def test_a_forged_size_on_a_mapped_slot_is_a_corrupt_segment_error(unique_name, forged):
    name = unique_name("size")
    with xmem.BufferPool(name, 4) as pool:
        buf = pool.acquire_cpu(100)  # maps the slot here: the next get takes the cached fast path
        s = buf.meta_index
        forge_size(name, 4, s, forged)
        with pytest.raises(xmem.CorruptSegmentError) as info:
            pool.get(s)
        assert "slot %d" % s in str(info.value)
        assert pool.ref_count(s) == 1  # the refused get changed no count
        forge_size(name, 4, s, 100)
        with pool.get(s) as again:
            assert again.size == 100
        buf.release()


# Runs in a child whose .NET heap is capped (DOTNET_GCHeapHardLimit, hexadecimal bytes: 16 MiB), a real limit of
# that process alone: it takes guards until xmem reports OutOfMemoryError, then releases every one. Before the fix
# the first release died of an OutOfMemoryException thrown in the handle table outside the export's try (SIGABRT).
_AT_THE_LIMIT = textwrap.dedent(
    """
    import sys, xmem
    pool = xmem.BufferPool(sys.argv[1], capacity=4)
    first = pool.acquire_cpu(64)
    guards, error = [], None
    try:
        while len(guards) < 5_000_000:
            guards.append(pool.get(first.meta_index))
    except xmem.XmemError as e:
        error = e
    print("filled", len(guards), type(error).__name__, flush=True)
    failed = 0
    for g in guards:
        try:
            g.release()
        except xmem.XmemError:
            failed += 1
    guards.clear()
    print("released failed=%d count=%d" % (failed, pool.ref_count(first.meta_index)), flush=True)
    first.release()
    pool.close()
    print("closed", flush=True)
    """
)


def test_a_process_at_its_memory_limit_gets_errors_and_releases_everything(unique_name):
    name = unique_name("oom")
    # A real limit of this child alone: a 16 MiB .NET heap. The library ships with the non-concurrent GC (fork
    # safety: no background GC thread a forked child could miss), and .NET 10's workstation non-concurrent GC itself
    # segfaults at a hard heap limit (in gc_heap::soh_try_fit, seen 4 in 5 runs) before xmem sees an
    # OutOfMemoryException; with the concurrent GC the limit surfaces as the OutOfMemoryException this test is about.
    env = dict(os.environ, DOTNET_GCHeapHardLimit="1000000", DOTNET_gcConcurrent="1")
    proc = subprocess.run([sys.executable, "-c", _AT_THE_LIMIT, name], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "child died (rc %d): %s\n%s" % (proc.returncode, proc.stdout, proc.stderr[-3000:])
    lines = proc.stdout.split("\n")
    filled = lines[0].split()
    assert filled[0] == "filled" and filled[2] == "OutOfMemoryError", proc.stdout
    assert int(filled[1]) > 1000
    assert lines[1] == "released failed=0 count=1", proc.stdout
    assert lines[2] == "closed"
    print("figures: %s guards taken at the limit, all released" % filled[1])
