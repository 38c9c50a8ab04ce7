"""Waiting for buffers from asyncio without blocking the event loop: one helper thread per source, however many
coroutines wait.

A *source* is what coroutines wait on: a channel (or subscription) for :meth:`Channel.arecv`, a pool for
:meth:`BufferPool.aacquire_cpu`. Each source that has coroutines waiting has one helper thread in this process; it
waits in the native library in slices (without the GIL) and hands each buffer it takes to the oldest waiting
coroutine, through that coroutine's event loop. So N coroutines waiting on S sources cost S threads, and a thread
ends when its source has no coroutine left.

Invariants
  * A buffer taken by the helper is owned by exactly one place at every moment: the helper thread, the callback in
    flight to a loop, a future's result, the source's stash, or the caller. The hand-off to a future happens on that
    future's loop, the only thread that can also cancel it, so "cancelled" and "got the buffer" cannot both happen.
  * A coroutine cancelled (``asyncio.CancelledError``) or timed out after its future got a buffer gives that buffer
    back (:meth:`AsyncSource.give_back`): the next waiting coroutine gets it; with none, a queue channel's buffer is
    sent back into the channel (where any receiver of any process can have it), a subscription's waits in the stash
    (served first by its next receive, released when it closes), and an acquired buffer is released.
  * At most one helper thread per source is running (``_thread``), under ``_lock``; it leaves in the same locked
    step in which it finds no coroutine waiting (after staying one slice for the next, woken by its arrival), so no
    waiter is ever left without one.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any, Callable, Deque, Generic, List, Optional, Tuple, TypeVar

__all__ = ["AsyncSource", "release"]

T = TypeVar("T")

# How long one native wait of a helper thread lasts at most: a helper whose coroutines were all cancelled notices
# within one slice and ends.
SLICE = 0.1


class _Waiter:
    __slots__ = ("loop", "future", "args")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]", args: Any) -> None:
        self.loop = loop
        self.future = future
        self.args = args


class AsyncSource(Generic[T]):
    """The coroutines waiting on one source and the helper thread that waits for them.

    Args:
        take: ``take(args, seconds)`` waits at most ``seconds`` for one item (``args`` are the oldest waiter's) and
            returns it, or None; it must release the GIL while it waits. An exception it raises ends every wait.
        orphan: ``orphan(item)`` disposes of an item that no waiting coroutine can have (sends it back, releases
            it) and returns True, or returns False to keep it in the stash for the next receive.
        per_waiter: an item is taken for the oldest waiter's arguments (an acquire's size) and is only ever that
            waiter's (no other waiter is offered it: it goes to ``orphan``).
        name: the helper thread's name.
    """

    __slots__ = ("_take", "_orphan", "_per_waiter", "_name", "_lock", "_idle", "_waiters", "_stash", "_thread",
                 "__weakref__")

    def __init__(self, take: Callable[[Any, float], Optional[T]], orphan: Callable[[T], bool], per_waiter: bool,
                 name: str) -> None:
        self._take = take
        self._orphan = orphan
        self._per_waiter = per_waiter
        self._name = name
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # the helper, with no waiter, waits on it for one (one slice)
        self._waiters: Deque[_Waiter] = collections.deque()
        self._stash: Deque[T] = collections.deque()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ the coroutine side

    def pop_stashed(self) -> Optional[T]:
        """An item given back by a cancelled coroutine, oldest first, or None."""
        if not self._stash:
            return None
        with self._lock:
            return self._stash.popleft() if self._stash else None

    async def wait(self, args: Any, timeout: Optional[float], on_timeout: Callable[[], BaseException]) -> T:
        """Waits for one item (the caller already looked without waiting). ``timeout`` None waits as long as it
        takes; else ``on_timeout()`` is raised after that many seconds."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[T]" = loop.create_future()
        waiter = _Waiter(loop, future, args)
        start = None
        with self._lock:
            self._waiters.append(waiter)
            self._idle.notify()  # a helper staying on with no waiter takes this one at once
            if self._thread is None:
                start = self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        if start is not None:
            try:
                start.start()
            except BaseException as e:  # no thread to be had: every wait queued so far fails, none waits for ever
                self._fail_all(e)
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _expire, future, on_timeout)
        try:
            return await future
        except BaseException:
            # Cancelled (or timed out) just after the helper handed us an item: it is ours, give it back.
            if future.done() and not future.cancelled() and future.exception() is None:
                self.give_back(future.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not future.done():
                future.cancel()

    def give_back(self, item: T) -> None:
        """``item`` belongs to no coroutine any more: the next live waiter gets it, else ``orphan`` disposes of it,
        else the stash keeps it. Called on any thread."""
        if not self._per_waiter:
            with self._lock:
                waiter = self._next_live_waiter()
            if waiter is not None:
                self._hand(waiter, item)
                return
        try:
            if self._orphan(item):
                return
        except Exception:  # pragma: no cover - could not send it back (closed meanwhile): keep it
            pass
        with self._lock:
            self._stash.appendleft(item)  # it was taken before anything the helper takes from now on

    # ------------------------------------------------------------------ the helper thread

    def _next_live_waiter(self) -> Optional[_Waiter]:
        """The oldest waiter whose future can still take a result, removed from the queue (under _lock)."""
        while self._waiters:
            w = self._waiters.popleft()
            if not w.future.done():
                return w
        return None

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._waiters and self._waiters[0].future.done():
                    self._waiters.popleft()
                if not self._waiters:
                    # Stay one slice with no waiter before leaving (taking nothing meanwhile: an item taken for
                    # nobody would be kept from synchronous receivers): a coroutine awaiting frame after frame
                    # (``async for`` at 30 fps) then reuses this thread instead of starting one per frame.
                    self._idle.wait(SLICE)
                    while self._waiters and self._waiters[0].future.done():
                        self._waiters.popleft()
                    if not self._waiters:
                        self._thread = None
                        return
                args = self._waiters[0].args
            try:
                item = self._take(args, SLICE)
            except BaseException as e:  # the source or its pool is closed, or broken: every waiter gets the error
                self._fail_all(e)
                return
            if item is None:
                continue
            if self._per_waiter:
                with self._lock:  # taken for the head waiter's arguments (its size): it is that waiter's
                    waiter = self._waiters.popleft() if self._waiters else None
                if waiter is None or waiter.future.done():
                    self.give_back(item)
                else:
                    self._hand(waiter, item)
            else:
                self.give_back(item)

    def _hand(self, waiter: _Waiter, item: T) -> None:
        """Hands ``item`` to ``waiter`` on its loop; a waiter whose future is done by then gives it back."""
        def deliver() -> None:
            if waiter.future.done():
                self.give_back(item)
            else:
                waiter.future.set_result(item)
        try:
            waiter.loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: nobody will run deliver
            self.give_back(item)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            waiters: List[_Waiter] = list(self._waiters)
            self._waiters.clear()
            self._thread = None
        for w in waiters:
            _fail(w, error)

    # ------------------------------------------------------------------ closing

    def drain(self) -> List[T]:
        """Takes every stashed item out (for the source's close to give back); the caller owns them."""
        with self._lock:
            items = list(self._stash)
            self._stash.clear()
        return items

    def counts(self) -> Tuple[int, int, bool]:
        """(waiting coroutines, stashed items, helper running) — for tests and diagnostics."""
        with self._lock:
            return (sum(1 for w in self._waiters if not w.future.done()), len(self._stash), self._thread is not None)


def _expire(future: "asyncio.Future[Any]", on_timeout: Callable[[], BaseException]) -> None:
    if not future.done():
        future.set_exception(on_timeout())


def _fail(w: _Waiter, error: BaseException) -> None:
    def fail() -> None:
        if not w.future.done():
            w.future.set_exception(error)
    try:
        w.loop.call_soon_threadsafe(fail)
    except RuntimeError:
        pass  # the loop is closed: nobody waits on it any more


def release(item: Any) -> bool:
    """An ``orphan`` that releases the guard (an acquired buffer nobody waits for any more)."""
    item.__exit__(None, None, None)  # releases the guard's reference; does nothing for a spent guard
    return True
