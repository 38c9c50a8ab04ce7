"""pool.close() while other threads are blocked in it: each waiter wakes and raises PoolClosedError (iteration ends),
and the pool is detached as soon as the last of them has left, with nothing held and nothing left in /dev/shm."""

import math
import threading
import time

import xmem

from conftest import segments_of


def test_close_wakes_threads_blocked_in_recv_iteration_and_acquire_then_detaches(unique_name):
    name = unique_name("closewait")
    pool = xmem.BufferPool(name, 1)
    ch = pool.channel("c", depth=4)
    held = pool.acquire_cpu(8)  # the only slot: acquire_cpu waits
    ended = {}

    def receiver(tag):
        try:
            ch.recv()
            ended[tag] = "returned"
        except xmem.PoolClosedError:
            ended[tag] = "PoolClosedError"

    def iterator():
        got = list(ch)  # ends when the pool is closed
        ended["iter"] = "ended with %d" % len(got)

    def acquirer():
        try:
            pool.acquire_cpu(8, timeout=math.inf)
            ended["acquire"] = "returned"
        except xmem.PoolClosedError:
            ended["acquire"] = "PoolClosedError"

    threads = [threading.Thread(target=receiver, args=("recv1",)), threading.Thread(target=receiver, args=("recv2",)),
               threading.Thread(target=iterator), threading.Thread(target=acquirer)]
    for t in threads:
        t.start()
        # Not a measurement: staggered starts, so that the waiters' 100 ms slices do not end together (with slices in
        # step, all of them may happen to be out of the library at once, and a close that only waits for that works).
        time.sleep(0.04)
    time.sleep(0.2)
    assert not ended
    pool.close()
    for t in threads:
        t.join(10)  # watchdog
    assert not [t for t in threads if t.is_alive()], "a waiter did not wake: %r" % ended
    assert ended == {"recv1": "PoolClosedError", "recv2": "PoolClosedError", "iter": "ended with 0",
                     "acquire": "PoolClosedError"}
    # Detached and removed although the channel handle is still open and `held` was never released.
    assert segments_of(name) == []
    ch.close()
    held.release()
