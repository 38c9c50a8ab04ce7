"""Channels: bounded queues of buffers in shared memory, over the C ABI's xmem_channel_* functions."""

from __future__ import annotations

import time
import weakref
from ctypes import byref, c_uint64
from typing import Any, AsyncIterator, Iterator, List, Optional

from . import _accel, _native
from ._async import AsyncSource
from ._errors import (
    GuardInvalidError,
    InvalidArgumentError,
    PoolClosedError,
    Status,
    XmemTimeoutError,
)
from ._native import ChannelProperties
from ._check import as_int, error
from ._guard import GUARD_INVALID_MESSAGE, BufferGuard, pending_guard
from ._lifecycle import fork_gen, open_channels
from ._pool import BufferPool

__all__ = ["Channel", "Subscription"]

_lib = _native.lib
_channel_send = _lib.xmem_channel_send
_channel_receive = _lib.xmem_channel_receive
_subscription_receive = _lib.xmem_subscription_receive
_channel_close = _lib.xmem_channel_close
_subscription_close = _lib.xmem_subscription_close

# Blocking calls wait in slices of at most this long: between slices Python runs its signal handlers, so Ctrl-C
# interrupts a blocked recv or send. ctypes releases the GIL during each slice.
_SLICE_NS = 100_000_000
_MODES = {"queue": _native.CHANNEL_QUEUE, "fanout": _native.CHANNEL_FANOUT}

# Channels and subscriptions inherited through fork() must not be used or closed by the child; those it opens itself
# work normally: they are in _lifecycle.open_channels, which the fork handler empties (closing nothing).


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    t = float(timeout)
    if not t >= 0:
        raise InvalidArgumentError("timeout is %r; it must be None (wait as long as it takes), 0 (do not wait) or a "
                                   "number of seconds." % (timeout,))
    return time.monotonic() + t


def _slice_ns(deadline: Optional[float]) -> int:
    if deadline is None:
        return _SLICE_NS
    left = deadline - time.monotonic()
    return max(0, min(int(left * 1e9), _SLICE_NS))


def _receive(fn: Any, handle: int, timeout: Optional[float], writable: bool, pool: BufferPool, what: str,
             owner: Any) -> Optional[BufferGuard]:
    """The receive loop shared by channels and subscriptions; None when ``timeout`` passed."""
    flags = _native.RECEIVE_WRITABLE if writable else 0
    deadline = _deadline(timeout)
    g = pending_guard(pool, not writable)  # owns the reference the moment the native call returns (see _PENDING)
    out = g._out
    if deadline is not None and timeout == 0:
        rc = fn(handle, 0, flags, byref(out), byref(out, 8))
    else:
        while True:
            rc = fn(handle, _slice_ns(deadline), flags, byref(out), byref(out, 8))
            if rc not in (Status.TIMEOUT, Status.WOULD_BLOCK):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            handle = owner._h  # closed meanwhile by another thread: stop
            if not handle:
                raise PoolClosedError("%s was closed while waiting to receive." % what, Status.DISPOSED)
    if rc in (Status.TIMEOUT, Status.WOULD_BLOCK):
        g._h = 0
        return None
    if rc:
        g._h = 0
        raise pool._fail(rc) if not pool._h else error(rc)
    g._h = out.guard
    return g


class Channel:
    """A named channel of a :class:`BufferPool`: a bounded queue of buffers in shared memory, used by any number of
    senders and receivers in any processes. Open it with :meth:`BufferPool.channel`.

    :meth:`send` moves a guard's reference into the channel (the guard is spent: no count is lost or doubled);
    :meth:`recv` returns a read-only guard that owns the reference it took out. References waiting in the channel
    belong to it: a process that dies loses none, and one that dies mid-send or mid-receive never wedges it. Waiting
    sleeps in the kernel without the GIL and can be interrupted (Ctrl-C). In ``"fanout"`` mode every
    :meth:`subscribe`\\ r receives every buffer sent after it joined, each with its own reference.

    Iterating (``for buf in ch:``) receives for ever; it ends when the channel or its pool is closed. From asyncio,
    ``await ch.arecv()`` and ``async for buf in ch:`` do the same without blocking the event loop. A channel is a
    context manager; :meth:`close` closes this process's handle (the channel and what waits in it stay, with the
    pool). Methods may be called from any thread.
    """

    __slots__ = ("_h", "_pool", "_name", "_depth", "_mode", "_async", "_spin", "__weakref__")

    _h: int
    _pool: BufferPool
    _name: str
    _depth: int
    _mode: str

    def __init__(self) -> None:
        self._h = 0
        raise TypeError("Channel objects come from BufferPool.channel(name, depth).")

    @classmethod
    def _open(cls, pool: BufferPool, name: str, depth: int, mode: str) -> "Channel":
        if not isinstance(name, str):
            raise TypeError("channel name must be a str, not %s" % type(name).__name__)
        if "\0" in name:
            raise InvalidArgumentError("channel name %r contains NUL; use 1-48 of [A-Za-z0-9._-]." % name)
        depth = as_int(depth, "depth", 1, 1 << 30)
        if mode not in _MODES:
            raise InvalidArgumentError("mode is %r; use 'queue' or 'fanout'." % (mode,))
        h = c_uint64()
        rc = _lib.xmem_pool_channel(pool._h, name.encode("utf-8"), depth, _MODES[mode], byref(h))
        if rc:
            raise pool._fail(rc)
        ch = object.__new__(cls)
        ch._h = h.value
        ch._pool = pool
        ch._name = name
        ch._depth = depth
        ch._mode = mode
        ch._async = None
        ch._spin = 0.0
        open_channels.add(ch)
        return ch

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        """The channel's name."""
        return self._name

    @property
    def depth(self) -> int:
        """How many buffers the channel holds (per subscriber in fan-out mode)."""
        return self._depth

    @property
    def mode(self) -> str:
        """``"queue"`` or ``"fanout"``."""
        return self._mode

    @property
    def pool(self) -> BufferPool:
        """The pool the channel belongs to."""
        return self._pool

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (or once the pool's handle is gone)."""
        return not self._h

    @property
    def spin(self) -> float:
        """Seconds a receive that finds the channel empty (and a send that finds it full) spins on its CPU, looking
        again every few hundred nanoseconds, before it sleeps in the kernel: 0 (the default) sleeps at once.

        Spinning sees a buffer within about a microsecond instead of the tens of microseconds a kernel wake-up takes,
        and keeps the CPU busy meanwhile: for a consumer with a CPU of its own and frames coming faster than the
        spin (``ch.spin = 200e-6``). It applies to this handle and its subscriptions (``recv``, ``try_recv`` with a
        timeout, iteration, ``send``), 0 to 1 s (100 ns steps); ``arecv`` never spins (it waits in the event loop)."""
        return self._spin

    @spin.setter
    def spin(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError("spin must be a number of seconds, not %s" % type(seconds).__name__)
        if not 0 <= seconds <= 1:  # also refuses NaN
            raise InvalidArgumentError("spin is %r s; it must be 0 (sleep at once) to 1 s." % (seconds,))
        ns = int(seconds * 1e9)
        self._check(_lib.xmem_channel_set_spin(self._live(), ns))
        self._spin = ns / 1e9

    def __len__(self) -> int:
        """Buffers waiting in a queue channel (approximate under concurrent use; 0 in fan-out mode)."""
        info = ChannelProperties()
        self._check(_lib.xmem_channel_info(self._live(), byref(info)))
        return info.count

    # ------------------------------------------------------------------ send / receive

    def send(self, buf: BufferGuard, timeout: Optional[float] = None) -> None:
        """Moves ``buf``'s reference into the channel, waiting while it is full: ``timeout=None`` as long as it takes,
        else that many seconds, then :class:`XmemTimeoutError` (a ``TimeoutError``; ``buf`` is then still yours).
        Afterwards ``buf`` is spent (``is_valid`` False). In fan-out mode with no subscriber the buffer is released.

        Raises:
            GuardInvalidError: ``buf`` was already released, forgotten or sent.
            InvalidArgumentError: ``buf`` comes from another pool object than the channel.
        """
        if not self._send(buf, timeout):
            raise XmemTimeoutError(
                "channel %r stayed full (%d buffers) for %g s; the buffer is still yours. Receive faster, wait "
                "longer, or open the channel with a larger depth." % (self._name, self._depth, timeout))

    def try_send(self, buf: BufferGuard, timeout: Optional[float] = 0) -> bool:
        """Like :meth:`send`, but returns False (``buf`` unchanged, still yours) when the channel stayed full for
        ``timeout`` seconds (0: do not wait)."""
        return self._send(buf, timeout)

    def _send(self, buf: BufferGuard, timeout: Optional[float]) -> bool:
        if _compiled is not None:
            return _compiled.send(self, buf, timeout)  # the same steps, waiting in native slices
        if not isinstance(buf, BufferGuard):
            raise TypeError("send() takes a BufferGuard, not %s" % type(buf).__name__)
        g = buf._h
        if not g:
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        if buf._pool is not self._pool:
            raise InvalidArgumentError(
                "the buffer comes from another BufferPool object than channel %r; send buffers acquired from the "
                "pool object the channel was opened on." % self._name)
        deadline = _deadline(timeout)
        while True:
            h = self._live()
            wait = 0 if timeout == 0 else _slice_ns(deadline)
            rc = _channel_send(h, g, wait)
            if rc == 0:
                buf._h = 0  # spent: its reference is in the channel
                buf._lease = None
                return True
            if rc not in (Status.TIMEOUT, Status.WOULD_BLOCK):
                err = self._error(rc)
                if _lib.xmem_guard_info(g, byref(_native.BufferInfo())) == Status.INVALID_HANDLE:
                    buf._h = 0  # the failed send still took the reference (and gave it back)
                raise err
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def recv(self, timeout: Optional[float] = None, *, writable: bool = False) -> BufferGuard:
        """Takes the next buffer out of the channel: a read-only guard (read-write with ``writable=True``) that owns
        its reference. Waits ``timeout`` seconds (None: as long as it takes) without holding the GIL, then raises
        :class:`XmemTimeoutError` (a ``TimeoutError``), also for ``timeout=0`` when the channel is empty."""
        g = _stashed(self._async, writable) if self._async is not None else None
        if g is None:
            g = _receive(_channel_receive, self._live(), timeout, writable, self._pool, "channel %r" % self._name, self)
            if g is None:
                raise XmemTimeoutError("nothing arrived in channel %r within %g s." % (self._name, timeout))
        return g

    def try_recv(self, timeout: Optional[float] = 0, *, writable: bool = False) -> Optional[BufferGuard]:
        """Like :meth:`recv`, but returns None when nothing came within ``timeout`` seconds (0: do not wait)."""
        if self._async is not None:
            g = _stashed(self._async, writable)  # given back by a cancelled arecv: it comes first
            if g is not None:
                return g
        return _receive(_channel_receive, self._live(), timeout, writable, self._pool, "channel %r" % self._name, self)

    async def arecv(self, timeout: Optional[float] = None, *, writable: bool = False) -> BufferGuard:
        """:meth:`recv` for asyncio: waits for the next buffer without blocking the event loop. A buffer that is
        there is returned at once; otherwise one helper thread per channel (however many coroutines wait) waits in
        the native library and hands buffers to the waiting coroutines, oldest first. ``timeout`` as for
        :meth:`recv` (:class:`XmemTimeoutError` after it). Cancelling the coroutine (``asyncio.CancelledError``)
        loses no buffer: one taken for it as it was cancelled goes to the next waiting coroutine, or back into the
        channel (at its tail) when none waits."""
        g = self.try_recv(0, writable=writable)
        if g is not None:
            return g
        if timeout == 0:
            raise XmemTimeoutError("nothing arrived in channel %r within 0 s." % self._name)
        _deadline(timeout)  # checks it
        return await _source(self, writable).wait(None, timeout, lambda: XmemTimeoutError(
            "nothing arrived in channel %r within %g s." % (self._name, timeout)))

    def __aiter__(self) -> AsyncIterator[BufferGuard]:
        """Receives buffers (read-only guards) for ever from asyncio (``async for buf in ch:``), as iterating does;
        ends when the channel or its pool is closed."""
        return _aiter(self)

    def _take(self, writable: bool, seconds: float) -> Optional[BufferGuard]:
        return _receive(_channel_receive, self._live(), seconds, writable, self._pool, "channel %r" % self._name, self)

    def __iter__(self) -> Iterator[BufferGuard]:
        """Receives buffers (read-only guards) for ever; ends when the channel or its pool is closed."""
        while True:
            if not self._h or not self._pool._h:
                return
            try:
                g = _stashed(self._async, False) if self._async is not None else None
                if g is None:
                    g = _receive(_channel_receive, self._h, None, False, self._pool, "channel %r" % self._name, self)
            except PoolClosedError:
                return
            if g is not None:
                yield g

    def subscribe(self) -> "Subscription":
        """Joins a fan-out channel: the returned :class:`Subscription` receives every buffer sent from now on, each
        with its own reference, until it is closed. At most 16 subscribers at a time (:class:`TooManyProcessesError`
        beyond). Raises :class:`InvalidArgumentError` on a queue channel."""
        h = c_uint64()
        self._check(_lib.xmem_channel_subscribe(self._live(), byref(h)))
        sub = object.__new__(Subscription)
        sub._h = h.value
        sub._channel = self
        sub._async = None
        open_channels.add(sub)
        return sub

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Closes this process's handle on the channel; closing twice does nothing. Its subscriptions keep working
        until they are closed."""
        h = self._h
        if h:
            if self._async is not None:
                for g in _drain(self._async):  # given back by cancelled coroutines: back into the channel
                    try:
                        if not self.try_send(g, 0):
                            g.release()
                    except Exception:
                        g.__exit__(None, None, None)
            self._h = 0
            open_channels.discard(self)
            _channel_close(h)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _close: Any = _channel_close, fork_gen: List[int] = fork_gen) -> None:
        h = getattr(self, "_h", 0)
        if h and self._pool._gen == fork_gen[0]:
            self._h = 0
            _close(h)

    def __repr__(self) -> str:
        state = "closed" if not getattr(self, "_h", 0) else "depth=%d" % self._depth
        return "<xmem.Channel %r %s %s>" % (getattr(self, "_name", "?"), getattr(self, "_mode", "?"), state)

    def _live(self) -> int:
        h = self._h
        if not h:
            if not self._pool._h:
                raise self._pool._fail(Status.DISPOSED)
            raise PoolClosedError("channel %r is closed; open it again with pool.channel(%r)." % (self._name, self._name),
                                  Status.DISPOSED)
        return h

    def _error(self, rc: int) -> Exception:
        return self._pool._fail(rc) if not self._pool._h else error(rc)

    def _check(self, rc: int) -> None:
        if rc:
            raise self._error(rc)


class Subscription:
    """One subscriber of a fan-out :class:`Channel` (from :meth:`Channel.subscribe`): receives every buffer sent
    after it joined, each with its own reference. Closing it (or leaving its ``with`` block) leaves the channel and
    releases what was still waiting for it. Iterating receives for ever, until it, its channel's pool, or it is
    closed."""

    __slots__ = ("_h", "_channel", "_async", "__weakref__")

    _h: int
    _channel: Channel

    def __init__(self) -> None:
        self._h = 0
        raise TypeError("Subscription objects come from Channel.subscribe().")

    @property
    def channel(self) -> Channel:
        """The channel subscribed to."""
        return self._channel

    @property
    def closed(self) -> bool:
        return not self._h

    def recv(self, timeout: Optional[float] = None, *, writable: bool = False) -> BufferGuard:
        """As :meth:`Channel.recv`, for this subscriber."""
        g = _stashed(self._async, writable) if self._async is not None else None
        if g is None:
            ch = self._channel
            g = _receive(_subscription_receive, self._live(), timeout, writable, ch._pool,
                         "subscription of %r" % ch._name, self)
            if g is None:
                raise XmemTimeoutError("nothing arrived for this subscriber of channel %r within %g s." % (
                    ch._name, timeout))
        return g

    def try_recv(self, timeout: Optional[float] = 0, *, writable: bool = False) -> Optional[BufferGuard]:
        """As :meth:`Channel.try_recv`, for this subscriber."""
        if self._async is not None:
            g = _stashed(self._async, writable)
            if g is not None:
                return g
        ch = self._channel
        return _receive(_subscription_receive, self._live(), timeout, writable, ch._pool, "subscription of %r" % ch._name, self)

    async def arecv(self, timeout: Optional[float] = None, *, writable: bool = False) -> BufferGuard:
        """As :meth:`Channel.arecv`, for this subscriber (one helper thread per subscription). A buffer taken for a
        coroutine cancelled meanwhile, with no other waiting, is kept for this subscription's next receive."""
        g = self.try_recv(0, writable=writable)
        if g is not None:
            return g
        name = self._channel._name
        if timeout == 0:
            raise XmemTimeoutError("nothing arrived for this subscriber of channel %r within 0 s." % name)
        _deadline(timeout)
        return await _source(self, writable).wait(None, timeout, lambda: XmemTimeoutError(
            "nothing arrived for this subscriber of channel %r within %g s." % (name, timeout)))

    def __aiter__(self) -> AsyncIterator[BufferGuard]:
        """``async for buf in sub:``: receives until this subscription or its channel's pool is closed."""
        return _aiter(self)

    def _take(self, writable: bool, seconds: float) -> Optional[BufferGuard]:
        ch = self._channel
        return _receive(_subscription_receive, self._live(), seconds, writable, ch._pool, "subscription of %r" % ch._name, self)

    def __iter__(self) -> Iterator[BufferGuard]:
        ch = self._channel
        while True:
            if not self._h or not ch._pool._h:
                return
            try:
                g = _stashed(self._async, False) if self._async is not None else None
                if g is None:
                    g = _receive(_subscription_receive, self._h, None, False, ch._pool, "subscription of %r" % ch._name,
                                 self)
            except PoolClosedError:
                return
            if g is not None:
                yield g

    def close(self) -> None:
        """Leaves the channel, releasing the buffers still waiting for this subscriber. Closing twice does nothing."""
        h = self._h
        if h:
            if self._async is not None:
                for g in _drain(self._async):  # given back by cancelled coroutines; the subscription's to release
                    g.__exit__(None, None, None)
            self._h = 0
            open_channels.discard(self)
            _subscription_close(h)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _close: Any = _subscription_close, fork_gen: List[int] = fork_gen) -> None:
        h = getattr(self, "_h", 0)
        if h and self._channel._pool._gen == fork_gen[0]:
            self._h = 0
            _close(h)

    def __repr__(self) -> str:
        return "<xmem.Subscription of %r%s>" % (self._channel._name, "" if self._h else " closed")

    def _live(self) -> int:
        h = self._h
        if not h:
            pool = self._channel._pool
            if pool._gen != fork_gen[0]:
                raise pool._fail(Status.DISPOSED)
            raise PoolClosedError("this subscription of channel %r is closed; subscribe again." % self._channel._name,
                                  Status.DISPOSED)
        return h


def _source(owner: Any, writable: bool) -> AsyncSource[BufferGuard]:
    """The async source of a channel or subscription for read-only or writable guards, made on first use."""
    pair = owner._async
    if pair is None:
        pair = owner._async = [None, None]
    src = pair[writable]
    if src is None:
        ref = weakref.ref(owner)  # held weakly: the owner holds the source, and its __del__ must still run

        def take(_args: Any, seconds: float) -> Optional[BufferGuard]:
            o = ref()
            if o is None:
                raise PoolClosedError("the channel was collected while coroutines waited on it.", Status.DISPOSED)
            return o._take(writable, seconds)
        def orphan(g: BufferGuard) -> bool:
            o = ref()
            # A queue channel takes it back (at its tail), for any receiver of any process; a subscription's ring
            # cannot be sent to alone: its buffer waits in the stash for the subscription's next receive.
            return isinstance(o, Channel) and bool(o._h) and o.try_send(g, 0)
        src = pair[writable] = AsyncSource(take, orphan, False, "xmem arecv")
    return src


def _stashed(pair: List[Optional[AsyncSource[BufferGuard]]], writable: bool) -> Optional[BufferGuard]:
    """A buffer given back by a cancelled coroutine, as a guard of the access asked for (one stashed by a receive
    of the other access is taken over through get/get_mut: the count stays the same)."""
    for w in (writable, not writable):
        src = pair[w]
        g = src.pop_stashed() if src is not None else None
        if g is not None:
            if w == writable:
                return g
            with g:
                return g._pool.get_mut(g.meta_index) if writable else g._pool.get(g.meta_index)
    return None


def _drain(pair: List[Optional[AsyncSource[BufferGuard]]]) -> List[BufferGuard]:
    return [g for src in pair if src is not None for g in src.drain()]


async def _aiter(owner: Any) -> AsyncIterator[BufferGuard]:
    pool = owner._pool if isinstance(owner, Channel) else owner._channel._pool
    while True:
        if not owner._h or not pool._h:
            return
        try:
            g = await owner.arecv()
        except PoolClosedError:
            return
        yield g


# The compiled implementation waits in native slices (one native call when a buffer is there or comes within one),
# and takes over send, try_send, recv, try_recv and iteration (the definitions above stay their documentation).
_compiled = _accel.compiled
if _compiled is not None:
    _receive = _compiled.receive  # noqa: F811
    _compiled.install_channels(Channel, Subscription, PoolClosedError, _stashed)

