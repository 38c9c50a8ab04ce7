"""A CUDA process of the stand-in tests (test_cuda_standin.py): ``python _cuda_roles.py POOL [--create]``, one
instruction per stdin line, one answer per line (``ok [values]`` or ``error TYPE: message``). It runs on the stand-in
driver named by XMEM_LIBCUDA; device bytes are written and read through the driver's copies. Objects (guards,
capsules, interfaces) are kept under names (o1, o2, ...)."""

import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import xmem  # noqa: E402
from _cuda_standin import Device, capsule_tensor, pattern  # noqa: E402


def main():
    name = sys.argv[1]
    pool = xmem.BufferPool(name, 4) if "--create" in sys.argv else xmem.BufferPool.open(name)
    dev = Device()
    objs = {}

    def keep(o):
        k = "o%d" % (len(objs) + 1)
        objs[k] = o
        return k

    def ptr_of(o):
        if isinstance(o, tuple):  # (capsule, versioned) or ("cai", dict)
            if o[0] == "cai":
                return o[1]["data"][0], o[1]["shape"][0]
            data, _, _, _ = capsule_tensor(o[0], o[1])
            return data, o[2]
        return o.cuda_ptr, o.size

    print("ready %d" % os.getpid(), flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "exit":
            print("ok", flush=True)
            break
        try:
            reply = execute(pool, dev, objs, keep, ptr_of, w)
        except Exception as e:  # noqa: BLE001 - the test reads the error
            reply = "error %s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        gc.collect()  # what the test dropped goes now (a guard's CUDA interface reference, a capsule)
        print(reply, flush=True)
    for k in [k for k in objs if k.startswith("channel:")]:
        objs.pop(k).close()
    objs.clear()
    pool.close()


def channel_of(pool, objs, name):
    key = "channel:" + name
    if key not in objs:
        objs[key] = pool.channel(name, depth=8)
    return objs[key]


def execute(pool, dev, objs, keep, ptr_of, w):
    """One instruction; returns the answer. Locals go when it returns, so a dropped object is really let go of."""
    op = w[0]
    if op == "acquire":
        g = pool.acquire_cuda(int(w[1]), int(w[2]))
        reply = "ok %s %d" % (keep(g), g.meta_index)
    elif op in ("get", "get_mut"):
        g = getattr(pool, op)(int(w[1]))
        reply = "ok " + keep(g)
    elif op == "fill":
        g = objs[w[1]]
        dev.write(g.cuda_ptr_mut, pattern(int(w[2]), g.size), g.device_id)
        reply = "ok"
    elif op == "verify":  # any object with a device pointer: guard, capsule, interface
        ptr, n = ptr_of(objs[w[1]])
        data = dev.read(ptr, n, int(w[3]) if len(w) > 3 else 0)
        reply = "ok" if data == pattern(int(w[2]), n) else "mismatch"
    elif op == "dlpack":
        g = objs[w[1]]
        versioned = w[2] == "1"
        cap = g.__dlpack__(max_version=(1, 0) if versioned else None)
        data, dtype, did, ro = capsule_tensor(cap, versioned)
        reply = "ok %s %d %d %d" % (keep((cap, versioned, g.size)), dtype, did, int(ro))
    elif op == "cai":
        g = objs[w[1]]
        cai = g.__cuda_array_interface__
        reply = "ok %s %d %d" % (keep(("cai", cai)), int(cai["data"][1]), cai["stream"])
    elif op == "drop":  # lets go of our object (a capsule's destructor runs its deleter)
        del objs[w[1]]
        reply = "ok"
    elif op == "release":
        objs[w[1]].release()
        reply = "ok"
    elif op == "forget":
        objs[w[1]].forget()
        reply = "ok"
    elif op == "release_index":
        reply = "ok %d" % pool.release(int(w[1]))
    elif op == "refcount":
        reply = "ok %d" % pool.ref_count(int(w[1]))
    elif op == "copy_to_cpu":
        c = objs[w[1]].copy_to_cpu()
        reply = "ok %s %d" % (keep(c), int(bytes(c.memoryview()) == pattern(int(w[2]), c.size)))
    elif op == "copy_to_cuda":
        reply = "ok " + keep(objs[w[1]].copy_to_cuda(int(w[2])))
    elif op == "fork_acquire":  # a fork child of this CUDA process opens the pool and tries CUDA: what it is told
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                with xmem.BufferPool.open(pool.name) as p2:
                    p2.acquire_cuda(64, 0).release()
                msg = "no error"
            except BaseException as e:  # noqa: BLE001
                msg = "%s: %s" % (type(e).__name__, e)
            os.write(wfd, msg.replace("\n", " ").encode())
            os._exit(0)
        os.close(wfd)
        with os.fdopen(r, "rb") as f:
            msg = f.read().decode()
        os.waitpid(pid, 0)
        reply = "ok " + msg
    elif op == "fork_hold":  # a fork child that keeps every descriptor it inherited, until killed: ok PID
        pid = os.fork()
        if pid == 0:
            try:
                while True:
                    time.sleep(1)
            finally:
                os._exit(0)
        reply = "ok %d" % pid
    elif op == "owners":  # which class defines the CUDA views this process uses
        g = objs[w[1]]
        owner = lambda a: next(c for c in type(g).__mro__ if a in c.__dict__).__name__  # noqa: E731
        reply = "ok %s %s" % (owner("__dlpack__"), owner("__cuda_array_interface__"))
    elif op == "send":  # send CHANNEL GUARD: the guard's reference moves into the channel
        channel_of(pool, objs, w[1]).send(objs[w[2]])
        reply = "ok"
    elif op == "recv":  # recv CHANNEL [w]
        g = channel_of(pool, objs, w[1]).recv(timeout=30, writable=len(w) > 2 and w[2] == "w")
        reply = "ok " + keep(g)
    elif op == "fds":  # descriptors this process has open
        return "ok %d" % len(os.listdir("/proc/self/fd"))
    elif op == "trim":
        reply = "ok %d" % pool.trim()
    elif op == "close":
        pool.close()
        reply = "ok"
    else:
        reply = "error ValueError: unknown instruction %r" % op
    return reply


if __name__ == "__main__":
    main()
