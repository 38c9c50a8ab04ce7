/*
 * xmembufferpool.c — GstBufferPool of xmem buffers (see xmembufferpool.h).
 */
#include "xmembufferpool.h"

#define GST_CAT_DEFAULT xmemgst_debug

struct _XmemGstBufferPool {
    GstBufferPool parent;
    XmemGstPool *pool;
    gsize frame_size; /* from the config */
};

G_DEFINE_TYPE(XmemGstBufferPool, xmemgst_buffer_pool, GST_TYPE_BUFFER_POOL)

G_DEFINE_QUARK(xmemgst-memory-box, box)

XmemGstMemoryBox *xmemgst_memory_box(GstMemory *memory)
{
    return gst_mini_object_get_qdata(GST_MINI_OBJECT_CAST(memory), box_quark());
}

/* The memory's destroy notify: the last GstBuffer that used it is gone. */
static void box_free(gpointer data)
{
    XmemGstMemoryBox *box = data;
    xmem_status st = xmem_guard_release(box->guard);
    if (st != XMEM_OK)
        GST_WARNING("xmem_guard_release: %s (%s)", xmem_last_error(), xmem_status_name(st));
    xmemgst_pool_unref(box->pool);
    g_free(box);
}

static gboolean xmemgst_buffer_pool_set_config(GstBufferPool *bpool, GstStructure *config)
{
    XmemGstBufferPool *self = XMEMGST_BUFFER_POOL(bpool);
    GstCaps *caps;
    guint size, min, max;
    if (!gst_buffer_pool_config_get_params(config, &caps, &size, &min, &max) || size == 0)
        return FALSE;
    self->frame_size = size;
    return GST_BUFFER_POOL_CLASS(xmemgst_buffer_pool_parent_class)->set_config(bpool, config);
}

static GstFlowReturn xmemgst_buffer_pool_alloc(GstBufferPool *bpool, GstBuffer **out,
                                               GstBufferPoolAcquireParams *params)
{
    XmemGstBufferPool *self = XMEMGST_BUFFER_POOL(bpool);
    gboolean dontwait = params != NULL && (params->flags & GST_BUFFER_POOL_ACQUIRE_FLAG_DONTWAIT) != 0;
    gint64 size = (gint64)self->frame_size + XMEMGST_TRAILER_SIZE;
    xmem_guard guard = 0;
    xmem_buffer_info info;
    for (;;) {
        /* Sliced: a full xmem pool blocks upstream (backpressure) until a consumer releases a slot, or until this
           pool is flushed or deactivated. */
        xmem_status st = xmem_pool_acquire_cpu_wait(self->pool->pool, size, dontwait ? 0 : XMEMGST_WAIT_SLICE_NS,
                                                    &guard, &info);
        if (st == XMEM_OK)
            break;
        if (st == XMEM_E_TIMEOUT && !dontwait && !GST_BUFFER_POOL_IS_FLUSHING(bpool))
            continue;
        if (st == XMEM_E_TIMEOUT || st == XMEM_E_POOL_FULL)
            return dontwait ? GST_FLOW_EOS : GST_FLOW_FLUSHING;
        GST_ERROR_OBJECT(self, "xmem_pool_acquire_cpu_wait(%" G_GINT64_FORMAT "): %s (%s)", size, xmem_last_error(),
                         xmem_status_name(st));
        return GST_FLOW_ERROR;
    }
    XmemGstMemoryBox *box = g_new0(XmemGstMemoryBox, 1);
    box->pool = xmemgst_pool_ref(self->pool);
    box->guard = guard;
    box->base = info.cpu_ptr;
    box->size = info.size;
    box->meta_index = info.meta_index;
    GstMemory *mem = gst_memory_new_wrapped(0, info.cpu_ptr, self->frame_size, 0, self->frame_size, box, box_free);
    gst_mini_object_set_qdata(GST_MINI_OBJECT_CAST(mem), box_quark(), box, NULL);
    GstBuffer *buffer = gst_buffer_new();
    gst_buffer_append_memory(buffer, mem);
    *out = buffer;
    return GST_FLOW_OK;
}

static void xmemgst_buffer_pool_release(GstBufferPool *bpool, GstBuffer *buffer)
{
    /* A buffer whose xmem buffer went on a channel must not be written again: tagging its memory makes the base
       class free it (and count it) instead of queueing it for reuse. */
    GstMemory *mem = gst_buffer_n_memory(buffer) == 1 ? gst_buffer_peek_memory(buffer, 0) : NULL;
    XmemGstMemoryBox *box = mem != NULL ? xmemgst_memory_box(mem) : NULL;
    if (box == NULL || g_atomic_int_get(&box->sent))
        GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_TAG_MEMORY);
    GST_BUFFER_POOL_CLASS(xmemgst_buffer_pool_parent_class)->release_buffer(bpool, buffer);
}

static void xmemgst_buffer_pool_finalize(GObject *object)
{
    XmemGstBufferPool *self = XMEMGST_BUFFER_POOL(object);
    xmemgst_pool_unref(self->pool);
    G_OBJECT_CLASS(xmemgst_buffer_pool_parent_class)->finalize(object);
}

static void xmemgst_buffer_pool_class_init(XmemGstBufferPoolClass *klass)
{
    GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
    GstBufferPoolClass *pool_class = GST_BUFFER_POOL_CLASS(klass);
    gobject_class->finalize = xmemgst_buffer_pool_finalize;
    pool_class->set_config = xmemgst_buffer_pool_set_config;
    pool_class->alloc_buffer = xmemgst_buffer_pool_alloc;
    pool_class->release_buffer = xmemgst_buffer_pool_release;
}

static void xmemgst_buffer_pool_init(XmemGstBufferPool *self)
{
    (void)self;
}

GstBufferPool *xmemgst_buffer_pool_new(XmemGstPool *pool)
{
    XmemGstBufferPool *self = g_object_new(XMEMGST_TYPE_BUFFER_POOL, NULL);
    gst_object_ref_sink(self); /* GstObjects start floating; the caller owns the one reference */
    self->pool = xmemgst_pool_ref(pool);
    return GST_BUFFER_POOL(self);
}
