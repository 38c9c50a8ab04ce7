"""Buffer descriptions: what a buffer says about itself (dtype, shape, strides, seq, timestamp, tags) round-trips
through the slot, drives the default views (numpy(), DLPack), and bad descriptions are refused with ValueError."""

import time

import pytest

import xmem

np = pytest.importorskip("numpy", reason="numpy is not installed (views are checked with it)")

ALL_NUMPY_DTYPES = ["uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64", "bool"]


def test_acquire_with_shape_sizes_and_describes_the_buffer(pool):
    t0 = time.monotonic_ns()
    with pool.acquire_cpu(shape=(480, 640, 3), dtype="uint8", seq=7, content_type="image/rgb8", producer="cam0") as buf:
        assert buf.size == 480 * 640 * 3
        d = buf.description
        assert d == xmem.Description("uint8", (480, 640, 3), (1920, 3, 1), 7, d.timestamp_ns, "image/rgb8", "cam0")
        assert t0 <= buf.timestamp_ns <= time.monotonic_ns()
        assert buf.timestamp == pytest.approx(buf.timestamp_ns / 1e9)
        assert (buf.shape, buf.dtype, buf.strides, buf.seq) == ((480, 640, 3), "uint8", (1920, 3, 1), 7)
        assert (buf.content_type, buf.producer) == ("image/rgb8", "cam0")
        a = buf.numpy()
        assert a.shape == (480, 640, 3) and a.dtype == np.uint8 and a.flags.writeable


def test_other_pool_objects_see_the_description_with_no_arguments(pool):
    other = xmem.BufferPool.open(pool.name)
    try:
        with pool.acquire_cpu(shape=(2, 3, 4), dtype=np.float32) as buf:
            buf.numpy()[:] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
            with other.get(buf.meta_index) as r:
                a = r.numpy()
                assert a.shape == (2, 3, 4) and a.dtype == np.float32 and not a.flags.writeable
                assert (a == np.arange(24).reshape(2, 3, 4)).all()
                t = np.from_dlpack(r)
                assert t.shape == (2, 3, 4) and t.dtype == np.float32 and (t == a).all()
    finally:
        other.close()


@pytest.mark.parametrize("dtype", ALL_NUMPY_DTYPES)
def test_every_element_type_round_trips_through_numpy(pool, dtype):
    with pool.acquire_cpu(shape=(3, 2), dtype=dtype) as buf:
        assert buf.dtype == dtype
        a = buf.numpy()
        assert a.dtype == np.dtype(dtype) and a.shape == (3, 2)
        a[:] = np.arange(6).reshape(3, 2).astype(dtype)
        with pool.get(buf.meta_index) as r:
            assert (r.numpy() == a).all() and r.numpy().dtype == np.dtype(dtype)


def test_torch_from_dlpack_gets_shape_dtype_and_strides(pool):
    torch = pytest.importorskip("torch")
    with pool.acquire_cpu(shape=(4, 5), dtype="float32") as buf:
        buf.numpy()[:] = np.arange(20, dtype=np.float32).reshape(4, 5)
        t = torch.from_dlpack(buf)
        assert t.shape == (4, 5) and t.dtype == torch.float32 and float(t[3, 4]) == 19.0
        buf.set_description(shape=(5, 4), dtype=torch.float32, strides=(4, 20))  # the transpose, in bytes
        tt = torch.from_dlpack(buf)
        assert tt.shape == (5, 4) and tt.stride() == (1, 5) and (tt == t.T).all()
    with pool.acquire_cpu(shape=(3,), dtype="bfloat16") as b16:
        assert b16.dtype == "bfloat16"
        with pytest.raises(ValueError, match="bfloat16"):
            b16.numpy()
        assert b16.numpy("uint16").shape == (3,)  # the raw bits
        t = torch.from_dlpack(b16)
        assert t.dtype == torch.bfloat16 and t.shape == (3,)


def test_strided_description_gives_a_strided_view(pool):
    with pool.acquire_cpu(48) as buf:
        buf.numpy("int32")[:] = np.arange(12, dtype=np.int32)
        buf.set_description(shape=(4, 3), dtype="int32", strides=(4, 16), seq=3)
        a = buf.numpy()
        assert a.shape == (4, 3) and a.strides == (4, 16)
        assert (a == np.arange(12).reshape(3, 4).T).all()
        assert (np.from_dlpack(buf) == a).all()


def test_explicit_arguments_override_the_description(pool):
    with pool.acquire_cpu(shape=(2, 4), dtype="float32") as buf:
        assert buf.numpy("uint8").shape == (32,)
        assert buf.numpy(shape=(8,)).dtype == np.float32  # the description's dtype, the given shape
        assert buf.memoryview().nbytes == 32


def test_undescribed_buffers_are_bytes(pool):
    with pool.acquire_cpu(10) as buf:
        assert buf.description is None
        assert (buf.shape, buf.dtype, buf.strides, buf.seq, buf.timestamp_ns, buf.content_type, buf.producer) == \
            ((10,), "uint8", (1,), 0, 0, "", "")
        assert buf.numpy().shape == (10,)


def test_a_description_without_a_tensor_and_replacing_one(pool):
    with pool.acquire_cpu(16) as buf:
        buf.set_description(seq=9, content_type="text/plain", timestamp_ns=1234)
        assert buf.description == xmem.Description(None, None, None, 9, 1234, "text/plain", "")
        assert buf.numpy().shape == (16,)
        buf.set_description(dtype="float64")  # dtype alone: 1-D over the whole buffer
        assert buf.description.shape == (2,) and buf.description.seq == 0
        buf.set_description(shape=(), dtype="int64")  # a scalar
        assert buf.numpy().shape == () and buf.description.strides == ()


def test_unicode_tags_up_to_31_bytes(pool):
    with pool.acquire_cpu(8) as buf:
        buf.set_description(content_type="é" * 15, producer="x" * 31)
        assert buf.content_type == "é" * 15 and buf.producer == "x" * 31


@pytest.mark.parametrize("kwargs, match", [
    (dict(shape=(3, 3), dtype="float32"), "reaches"),             # 36 bytes > 32
    (dict(shape=(1,) * 9, dtype="uint8"), "8"),                    # too many dimensions
    (dict(shape=(-1,), dtype="uint8"), "dimension"),
    (dict(shape=(2,), dtype="complex64"), "complex64"),
    (dict(shape=(2,), dtype=">f4"), "big-endian"),
    (dict(shape=(2,), dtype="float32", strides=(3,)), "stride"),   # not a multiple of the item size
    (dict(shape=(2, 2), dtype="float32", strides=(4,)), "strides"),
    (dict(strides=(1,)), "shape"),
    (dict(content_type="x" * 32), "31"),
    (dict(producer="a\0b"), "NUL"),
    (dict(seq=-1), "seq"),
])
def test_bad_descriptions_are_refused_with_value_error(pool, kwargs, match):
    with pool.acquire_cpu(32) as buf:
        buf.set_description(shape=(8,), dtype="float32", seq=1)
        with pytest.raises(ValueError, match=match):
            buf.set_description(**kwargs)
        assert buf.description.seq == 1 and buf.shape == (8,)  # nothing was written


def test_bad_descriptions_at_acquire_leave_no_buffer_behind(pool):
    with pytest.raises(ValueError):
        pool.acquire_cpu(8, shape=(3,), dtype="float32")  # 12 bytes do not fit in 8
    with pytest.raises(ValueError):
        pool.acquire_cpu(shape=(2,), dtype="object")
    with pytest.raises(TypeError):
        pool.acquire_cpu()
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_read_only_guards_cannot_describe_and_released_ones_cannot_read(pool):
    with pool.acquire_cpu(8) as buf, pool.get(buf.meta_index) as r:
        with pytest.raises(xmem.ReadOnlyError):
            r.set_description(shape=(8,))
    with pytest.raises(xmem.GuardInvalidError):
        buf.description
    with pytest.raises(xmem.GuardInvalidError):
        buf.set_description(seq=1)
