"""Channels: bounded queues of buffers in shared memory, over the C ABI's xmem_channel_* functions."""

from __future__ import annotations

import time
from ctypes import byref, c_uint64
from typing import Any, Iterator, List, Optional

from . import _accel, _native
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

    Iterating (``for buf in ch:``) receives for ever; it ends when the channel or its pool is closed. A channel is a
    context manager; :meth:`close` closes this process's handle (the channel and what waits in it stay, with the
    pool). Methods may be called from any thread.
    """

    __slots__ = ("_h", "_pool", "_name", "_depth", "_mode", "__weakref__")

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
        g = _receive(_channel_receive, self._live(), timeout, writable, self._pool, "channel %r" % self._name, self)
        if g is None:
            raise XmemTimeoutError("nothing arrived in channel %r within %g s." % (self._name, timeout))
        return g

    def try_recv(self, timeout: Optional[float] = 0, *, writable: bool = False) -> Optional[BufferGuard]:
        """Like :meth:`recv`, but returns None when nothing came within ``timeout`` seconds (0: do not wait)."""
        return _receive(_channel_receive, self._live(), timeout, writable, self._pool, "channel %r" % self._name, self)

    def __iter__(self) -> Iterator[BufferGuard]:
        """Receives buffers (read-only guards) for ever; ends when the channel or its pool is closed."""
        while True:
            if not self._h or not self._pool._h:
                return
            try:
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
        open_channels.add(sub)
        return sub

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Closes this process's handle on the channel; closing twice does nothing. Its subscriptions keep working
        until they are closed."""
        h = self._h
        if h:
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

    __slots__ = ("_h", "_channel", "__weakref__")

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
        ch = self._channel
        g = _receive(_subscription_receive, self._live(), timeout, writable, ch._pool, "subscription of %r" % ch._name, self)
        if g is None:
            raise XmemTimeoutError("nothing arrived for this subscriber of channel %r within %g s." % (ch._name, timeout))
        return g

    def try_recv(self, timeout: Optional[float] = 0, *, writable: bool = False) -> Optional[BufferGuard]:
        """As :meth:`Channel.try_recv`, for this subscriber."""
        ch = self._channel
        return _receive(_subscription_receive, self._live(), timeout, writable, ch._pool, "subscription of %r" % ch._name, self)

    def __iter__(self) -> Iterator[BufferGuard]:
        ch = self._channel
        while True:
            if not self._h or not ch._pool._h:
                return
            try:
                g = _receive(_subscription_receive, self._h, None, False, ch._pool, "subscription of %r" % ch._name, self)
            except PoolClosedError:
                return
            if g is not None:
                yield g

    def close(self) -> None:
        """Leaves the channel, releasing the buffers still waiting for this subscriber. Closing twice does nothing."""
        h = self._h
        if h:
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


# The compiled implementation waits in native slices (one native call when a buffer is there or comes within one),
# and takes over send, try_send, recv, try_recv and iteration (the definitions above stay their documentation).
_compiled = _accel.compiled
if _compiled is not None:
    _receive = _compiled.receive  # noqa: F811
    _compiled.install_channels(Channel, Subscription, PoolClosedError)

