"""The exception tree, the status table and the messages."""

import os
import re

import pytest

import xmem
from xmem import _errors

from conftest import REPO_ROOT


def header_statuses():
    with open(os.path.join(REPO_ROOT, "include", "xmem.h")) as f:
        text = f.read()
    found = re.finditer(r"#define\s+XMEM_(OK|E_\w+)\s+(\d+)", text)
    return {m.group(1)[2:] if m.group(1).startswith("E_") else m.group(1): int(m.group(2)) for m in found}


def test_status_enum_matches_the_header():
    assert {s.name: int(s) for s in xmem.Status} == header_statuses()


def test_every_failure_status_has_exactly_one_class():
    failures = [s for s in xmem.Status if s != xmem.Status.OK]
    assert sorted(_errors.ERROR_CLASSES) == sorted(int(s) for s in failures)
    for status, cls in _errors.ERROR_CLASSES.items():
        assert issubclass(cls, xmem.XmemError)
        assert cls.status == status
        assert cls.__doc__


def test_every_class_is_exported():
    for cls in _errors.ERROR_CLASSES.values():
        assert getattr(xmem, cls.__name__) is cls


@pytest.mark.parametrize("cls, builtin", [
    (xmem.XmemError, RuntimeError),
    (xmem.InvalidArgumentError, ValueError),
    (xmem.InvalidNameError, ValueError),
    (xmem.IndexOutOfRangeError, ValueError),
    (xmem.IndexOutOfRangeError, IndexError),
    (xmem.PoolNotFoundError, FileNotFoundError),
    (xmem.PoolExistsError, FileExistsError),
    (xmem.PermissionDeniedError, PermissionError),
    (xmem.XmemTimeoutError, TimeoutError),
    (xmem.OutOfMemoryError, MemoryError),
    (xmem.PoolClosedError, ValueError),
    (xmem.XmemOSError, OSError),
    (xmem.WouldBlockError, BlockingIOError),
    (xmem.SlotNotLiveError, LookupError),
])
def test_classes_subclass_the_fitting_builtin(cls, builtin):
    assert issubclass(cls, builtin)
    assert issubclass(cls, xmem.XmemError) and issubclass(cls, RuntimeError)


def test_unknown_status_gives_the_base_class_with_the_number():
    e = _errors.error_for(4242, "odd")
    assert type(e) is xmem.XmemError and e.status == 4242 and "4242" in str(e)


def test_missing_pool_is_a_file_not_found_error_with_errno(unique_name):
    name = unique_name()
    with pytest.raises(FileNotFoundError) as e:
        xmem.BufferPool.open(name)
    assert isinstance(e.value, xmem.PoolNotFoundError)
    assert e.value.status == xmem.Status.NOT_FOUND
    assert e.value.errno == e.value.native_error == 2
    assert name in str(e.value) and "Create the pool first" in str(e.value)


def test_existing_pool_is_a_file_exists_error(pool):
    with pytest.raises(FileExistsError) as e:
        xmem.BufferPool(pool.name, 2)
    assert isinstance(e.value, xmem.PoolExistsError)
    assert "Open it by name instead" in str(e.value)


@pytest.mark.parametrize("bad", ["", "a b", "x/y", "..", ".hidden", "a" * 201, "caf\u00e9"])
def test_bad_names_raise_invalid_name_error(bad):
    with pytest.raises(xmem.InvalidNameError) as e:
        xmem.BufferPool(bad, 2)
    assert isinstance(e.value, ValueError) and e.value.status == xmem.Status.INVALID_NAME
    assert "pool name" in str(e.value)


def test_nul_in_a_name_is_refused_not_truncated(unique_name):
    name = unique_name()
    with pytest.raises(xmem.InvalidNameError, match="NUL"):
        xmem.BufferPool(name + "\0tail", 2)
    assert not xmem.BufferPool.exists(name)


def test_a_name_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError):
        xmem.BufferPool(b"bytes", 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("capacity", [0, -1, 1 << 21, 1 << 40])
def test_bad_capacity_is_a_value_error(unique_name, capacity):
    with pytest.raises(ValueError) as e:
        xmem.BufferPool(unique_name(), capacity)
    assert "capacity" in str(e.value)


def test_bad_mode_is_a_value_error(unique_name):
    with pytest.raises(xmem.InvalidArgumentError, match="mode"):
        xmem.BufferPool(unique_name(), 2, mode=0o400)


@pytest.mark.parametrize("size", [0, -5, 1 << 63, 1 << 70])
def test_bad_sizes_are_value_errors(pool, size):
    with pytest.raises(xmem.InvalidArgumentError, match="size"):
        pool.acquire_cpu(size)


def test_non_integer_arguments_are_type_errors(pool):
    with pytest.raises(TypeError):
        pool.acquire_cpu(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pool.get("0")  # type: ignore[arg-type]


def test_indexes_outside_the_pool_raise_index_out_of_range(pool):
    for i in (-1, pool.capacity, 1 << 31, 1 << 40, -(1 << 40)):
        with pytest.raises((xmem.IndexOutOfRangeError, xmem.InvalidArgumentError)) as e:
            pool.get(i)
        assert isinstance(e.value, ValueError)
    with pytest.raises(IndexError, match="outside"):
        pool.ref_count(pool.capacity)


def test_huge_index_is_not_truncated_onto_a_live_slot(pool):
    with pool.acquire_cpu(8) as buf:
        with pytest.raises(ValueError):
            pool.add_ref(buf.meta_index + (1 << 32))
        assert pool.ref_count(buf.meta_index) == 1


def test_slot_not_live(pool):
    with pytest.raises(xmem.SlotNotLiveError, match=r"add a reference \(or set the count\)"):
        pool.get(3)


def test_error_attributes(pool):
    with pytest.raises(xmem.XmemError) as e:
        pool.get(5)
    assert e.value.status == xmem.Status.SLOT_NOT_LIVE
    assert isinstance(e.value.status, xmem.Status)
    assert e.value.native_error == 0
