"""Process events shared by pools, guards, views and channels: fork() and interpreter exit.

Invariants
  * A child made by fork() inherits the parent's objects, whose references, leases and process-table entries stay
    the parent's: the child must neither use nor release them (the library makes their native state inert there
    too, in its own atfork handler). Objects the child makes itself work and release normally.
  * ``fork_gen[0]`` counts the forks between this process and the one that imported xmem. Every pool (and every
    guard, view, channel and subscription made from it) remembers the generation it was opened in; an older one was
    inherited. Finalizers bind the list as a default argument, so it outlives module teardown at exit.
  * ``open_pools`` / ``open_channels`` hold (weakly) the pools and channels/subscriptions this process opened and has
    not closed: the fork handler makes the inherited ones closed-looking (``_h = 0``; a pool's native box emptied so
    that nothing closes the parent's handle), and the exit hook detaches this process's pools while everything still
    works.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Any, List

__all__ = ["fork_gen", "open_pools", "open_channels", "inherited_message"]

fork_gen: List[int] = [0]
open_pools: "weakref.WeakSet[Any]" = weakref.WeakSet()
open_channels: "weakref.WeakSet[Any]" = weakref.WeakSet()


def inherited_message(name: str) -> str:
    """What to do with pool ``name`` (or anything made from it) used in a child made by fork()."""
    return ("pool %r was opened before this process was forked: in a child made by fork() it and its guards, views "
            "and channels are inert (their references belong to the parent). Open the pool again in the child with "
            "BufferPool.open(%r), or start children with multiprocessing's 'spawn' or 'forkserver' start method."
            % (name, name))


def _after_fork_in_child() -> None:
    # Pools first, then what was made from them: once the generation has gone up, every finalizer of an inherited
    # object sees it is the parent's and leaves it alone.
    fork_gen[0] += 1
    for pool in list(open_pools):
        pool._h = 0
        box = getattr(pool, "_box", None)
        if box is not None:
            box.value = 0  # the parent's handle: this process must never close it
    open_pools.clear()
    for obj in list(open_channels):
        obj._h = 0
    open_channels.clear()


def _close_all_at_exit() -> None:
    # Detach before the interpreter tears down, while everything still works (guards left alive are released by the
    # close; their finalizers then do nothing harmful). Only this process's own pools are in the set.
    for pool in list(open_pools):
        pool.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
