/* The runtime's list of threads in a child made by fork() (runtime_threads.c says why and how). */
#ifndef XMEM_RUNTIME_THREADS_H
#define XMEM_RUNTIME_THREADS_H

#include "fork_gate.h"

/* Detaches every thread the runtime lists but the calling one (the parent's, in a child made by fork()) and leaves
   the calling thread alone on the list; returns how many were dropped, or -1 (nothing changed) when the list does
   not look the way this library was built to expect. Only for fork()'s child handler: the calling thread is the
   process's only one. */
XMEM_GATE_HIDDEN int xmem_gate_runtime_forget_parent_threads(void);

#endif
