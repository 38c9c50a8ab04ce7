/*
 * xmembufferpool.h — a GstBufferPool whose buffers are xmem buffers, offered by xmemsink in the allocation query so
 * that upstream writes frames straight into shared memory.
 *
 * Each GstBuffer has one GstMemory wrapping one xmem buffer of frame size + XMEMGST_TRAILER_SIZE bytes; the memory
 * shows the frame bytes only (the trailer is xmemsink's). The memory holds the xmem reference (a guard) until
 * GStreamer frees it, so the slot is never recycled while any GstBuffer still points into it. xmemsink sends a second
 * reference of its own (xmem_pool_get_mut), and marks the memory sent: a sent buffer is freed when it comes back to
 * the pool, never handed to upstream again (the consumer is reading it).
 */
#ifndef XMEMBUFFERPOOL_H
#define XMEMBUFFERPOOL_H

#include "xmemgst.h"

G_BEGIN_DECLS

/* What a GstMemory of this pool wraps. `sent` is written by the streaming thread that sent it and read when the
   buffer comes back to the pool, after the last unref (whose atomic decrement orders the two). */
typedef struct XmemGstMemoryBox {
    XmemGstPool *pool;  /* a reference */
    xmem_guard guard;   /* read-write; released when the memory is freed */
    guint8 *base;       /* the xmem buffer's first byte */
    gint64 size;        /* the xmem buffer's size: frame + trailer */
    gint32 meta_index;
    gint sent;          /* atomic: 1 once a reference to it went on a channel */
} XmemGstMemoryBox;

#define XMEMGST_TYPE_BUFFER_POOL (xmemgst_buffer_pool_get_type())
G_DECLARE_FINAL_TYPE(XmemGstBufferPool, xmemgst_buffer_pool, XMEMGST, BUFFER_POOL, GstBufferPool)

/* A pool of xmem buffers of `pool` (a reference is taken). */
GstBufferPool *xmemgst_buffer_pool_new(XmemGstPool *pool);

/* The box of a memory made by any XmemGstBufferPool; NULL for other memory. */
XmemGstMemoryBox *xmemgst_memory_box(GstMemory *memory);

G_END_DECLS

#endif /* XMEMBUFFERPOOL_H */
