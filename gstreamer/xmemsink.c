/*
 * xmemsink — sends every GstBuffer as a described xmem buffer on a channel of a pool.
 *
 * Flow per buffer (render, the streaming thread):
 *   1. zero copy: the buffer is one memory of this sink's XmemGstBufferPool (upstream wrote into shared memory):
 *      a second read-write reference to that slot (xmem_pool_get_mut) is what gets sent;
 *      otherwise: a fresh xmem buffer (frame + trailer) and one copy into it.
 *   2. the description (dtype, shape, strides, content type, seq, CLOCK_MONOTONIC time) and the trailer (PTS,
 *      duration, buffer flags) are written;
 *   3. the reference moves into the channel: waiting while it is full (backpressure), or dropped with leaky=true.
 * Every wait is sliced (XMEMGST_WAIT_SLICE_NS) and gives way to flushing and state changes through unlock():
 * the render then calls gst_base_sink_wait_preroll(), as GstBaseSink asks of subclasses that block.
 * On EOS the sink sends the end marker (XMEMGST_EOS_CONTENT_TYPE).
 *
 * Nothing leaks on any error path: a guard is either sent (the channel owns its reference) or released.
 */
#include "xmemsink.h"

#include <string.h>

#include "xmembufferpool.h"

#define GST_CAT_DEFAULT xmemgst_debug

struct _GstXmemSink {
    GstBaseSink parent;

    /* properties (object lock) */
    gchar *pool_name;
    gchar *channel_name;
    gint capacity;
    gint depth;
    gint mode;
    gboolean leaky;
    gboolean zero_copy;

    /* between start and stop */
    XmemGstPool *pool;
    xmem_channel channel;
    GstBufferPool *buffer_pool; /* the one offered in the last allocation query */

    /* streaming thread */
    XmemGstLayout layout;
    gboolean have_layout;
    guint64 seq;

    gint unlocked; /* atomic: unlock() until unlock_stop() */

    /* counters (atomic, relaxed: statistics only) */
    guint64 frames_zero_copy;
    guint64 frames_copied;
    guint64 frames_dropped;
};

enum {
    PROP_0,
    PROP_POOL,
    PROP_CHANNEL,
    PROP_CAPACITY,
    PROP_DEPTH,
    PROP_MODE,
    PROP_LEAKY,
    PROP_ZERO_COPY,
    PROP_FRAMES_ZERO_COPY,
    PROP_FRAMES_COPIED,
    PROP_FRAMES_DROPPED,
    N_PROPS
};
static GParamSpec *props[N_PROPS];

#define DEFAULT_CAPACITY 64
#define DEFAULT_DEPTH 8

/* Any caps: raw video of the formats docs/gstreamer.md lists becomes tensors, the rest bytes (a caps string cannot
   say "these first, then anything", so the template is ANY). */
static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
                                                                    GST_STATIC_CAPS_ANY);

G_DEFINE_TYPE(GstXmemSink, gst_xmem_sink, GST_TYPE_BASE_SINK)

static void count(guint64 *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static guint64 read_count(guint64 *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------------------------------------- waiting */

/* After a wait slice ran out: GST_FLOW_OK to wait again, else what render must return (flushing). */
static GstFlowReturn after_slice(GstXmemSink *self)
{
    if (!g_atomic_int_get(&self->unlocked))
        return GST_FLOW_OK;
    /* unlock() came (flush or PLAYING->PAUSED): GstBaseSink wants the render to wait for preroll here; it returns
       GST_FLOW_OK when playing again, GST_FLOW_FLUSHING when flushing. */
    return gst_base_sink_wait_preroll(GST_BASE_SINK(self));
}

/* A fresh xmem buffer of `size` bytes; waits (sliced) while the pool is full, unless leaky. */
static GstFlowReturn acquire(GstXmemSink *self, gint64 size, xmem_guard *guard, xmem_buffer_info *info,
                             gboolean *dropped)
{
    *dropped = FALSE;
    for (;;) {
        xmem_status st = xmem_pool_acquire_cpu_wait(self->pool->pool, size, self->leaky ? 0 : XMEMGST_WAIT_SLICE_NS,
                                                    guard, info);
        if (st == XMEM_OK)
            return GST_FLOW_OK;
        if (self->leaky && (st == XMEM_E_TIMEOUT || st == XMEM_E_POOL_FULL)) {
            *dropped = TRUE;
            return GST_FLOW_OK;
        }
        if (st == XMEM_E_TIMEOUT) {
            GstFlowReturn ret = after_slice(self);
            if (ret != GST_FLOW_OK)
                return ret;
            continue;
        }
        XMEMGST_POST_ERROR(self, xmemgst_error(st, "could not acquire an xmem buffer"));
        return GST_FLOW_ERROR;
    }
}

/* Moves the guard's reference into the channel; on any outcome but GST_FLOW_OK with *dropped FALSE, the guard has
   been released here. */
static GstFlowReturn send(GstXmemSink *self, xmem_guard guard, gboolean *dropped)
{
    *dropped = FALSE;
    for (;;) {
        xmem_status st = xmem_channel_send(self->channel, guard, self->leaky ? 0 : XMEMGST_WAIT_SLICE_NS);
        if (st == XMEM_OK)
            return GST_FLOW_OK;
        /* A live handle after a failed send is still ours (docs/c-abi.md, "Channels"). */
        xmem_buffer_info probe;
        gboolean still_ours = xmem_guard_info(guard, &probe) == XMEM_OK;
        if (self->leaky && (st == XMEM_E_WOULD_BLOCK || st == XMEM_E_TIMEOUT)) {
            xmem_guard_release(guard);
            *dropped = TRUE;
            return GST_FLOW_OK;
        }
        if (st == XMEM_E_TIMEOUT) {
            GstFlowReturn ret = after_slice(self);
            if (ret != GST_FLOW_OK) {
                xmem_guard_release(guard);
                return ret;
            }
            continue;
        }
        GError *e = xmemgst_error(st, "could not send on the xmem channel");
        if (still_ours)
            xmem_guard_release(guard);
        XMEMGST_POST_ERROR(self, e);
        return GST_FLOW_ERROR;
    }
}

/* ---------------------------------------------------------------------------------------------- render */

/* The frame in `buffer` copied into dst (size bytes, GStreamer's default layout for video). */
static gboolean copy_frame(GstXmemSink *self, GstBuffer *buffer, guint8 *dst, gint64 size)
{
    if (self->layout.kind == XMEMGST_LAYOUT_BYTES) {
        return gst_buffer_extract(buffer, 0, dst, (gsize)size) == (gsize)size;
    }
    GstVideoFrame src_frame, dst_frame;
    if (!gst_video_frame_map(&src_frame, &self->layout.vinfo, buffer, GST_MAP_READ))
        return FALSE;
    GstBuffer *wrapped = gst_buffer_new_wrapped_full(0, dst, (gsize)size, 0, (gsize)size, NULL, NULL);
    gboolean ok = gst_video_frame_map(&dst_frame, &self->layout.vinfo, wrapped, GST_MAP_WRITE);
    if (ok) {
        ok = gst_video_frame_copy(&dst_frame, &src_frame);
        gst_video_frame_unmap(&dst_frame);
    }
    gst_buffer_unref(wrapped);
    gst_video_frame_unmap(&src_frame);
    return ok;
}

/* The slot of a buffer upstream wrote straight into, if it is one of ours in the default layout; else NULL. */
static XmemGstMemoryBox *zero_copy_box(GstXmemSink *self, GstBuffer *buffer)
{
    if (self->layout.kind == XMEMGST_LAYOUT_BYTES || gst_buffer_n_memory(buffer) != 1)
        return NULL;
    GstMemory *mem = gst_buffer_peek_memory(buffer, 0);
    XmemGstMemoryBox *box = xmemgst_memory_box(mem);
    if (box == NULL || box->pool != self->pool || mem->offset != 0 || (gint64)mem->size != self->layout.frame_size
        || box->size != self->layout.frame_size + XMEMGST_TRAILER_SIZE || g_atomic_int_get(&box->sent))
        return NULL;
    GstVideoMeta *meta = gst_buffer_get_video_meta(buffer);
    if (meta != NULL) {
        for (guint i = 0; i < meta->n_planes; i++)
            if (meta->offset[i] != self->layout.vinfo.offset[i] || meta->stride[i] != self->layout.vinfo.stride[i])
                return NULL;
    }
    return box;
}

static GstFlowReturn gst_xmem_sink_render(GstBaseSink *bsink, GstBuffer *buffer)
{
    GstXmemSink *self = GST_XMEM_SINK(bsink);
    if (!self->have_layout) {
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("xmemsink received a buffer before its caps"), (NULL));
        return GST_FLOW_NOT_NEGOTIATED;
    }
    const XmemGstLayout *l = &self->layout;
    gint64 data_size = l->kind == XMEMGST_LAYOUT_BYTES ? (gint64)gst_buffer_get_size(buffer) : l->frame_size;
    xmem_guard guard = 0;
    xmem_buffer_info info;
    gboolean dropped = FALSE;
    GstFlowReturn ret;

    XmemGstMemoryBox *box = zero_copy_box(self, buffer);
    if (box != NULL) {
        /* A reference of our own for the channel; the GstMemory keeps its own until GStreamer frees it. */
        xmem_status st = xmem_pool_get_mut(self->pool->pool, box->meta_index, &guard, &info);
        if (st != XMEM_OK) {
            XMEMGST_POST_ERROR(self, xmemgst_error(st, "could not take a reference to the frame upstream wrote"));
            return GST_FLOW_ERROR;
        }
    } else {
        ret = acquire(self, data_size + XMEMGST_TRAILER_SIZE, &guard, &info, &dropped);
        if (ret != GST_FLOW_OK)
            return ret;
        if (dropped) {
            count(&self->frames_dropped);
            return GST_FLOW_OK;
        }
        if (!copy_frame(self, buffer, info.cpu_ptr, data_size)) {
            xmem_guard_release(guard);
            GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                              ("xmemsink could not read a frame of the negotiated caps from the buffer "
                               "(%" G_GSIZE_FORMAT " bytes)", gst_buffer_get_size(buffer)),
                              (NULL));
            return GST_FLOW_ERROR;
        }
    }

    xmem_description d = l->description;
    d.flags = XMEM_DESC_TIMESTAMP_NOW;
    d.seq = ++self->seq;
    if (l->kind == XMEMGST_LAYOUT_BYTES)
        d.shape[0] = data_size;
    xmem_status st = xmem_guard_set_description(guard, &d);
    if (st != XMEM_OK) {
        xmem_guard_release(guard);
        XMEMGST_POST_ERROR(self, xmemgst_error(st, "xmem refused the frame's description"));
        return GST_FLOW_ERROR;
    }
    xmemgst_trailer_write(info.cpu_ptr, info.size, buffer, box != NULL);

    ret = send(self, guard, &dropped);
    if (ret != GST_FLOW_OK)
        return ret;
    if (dropped) {
        count(&self->frames_dropped);
    } else if (box != NULL) {
        /* Never hand this buffer to upstream again: the consumer reads it now. */
        g_atomic_int_set(&box->sent, 1);
        count(&self->frames_zero_copy);
    } else {
        count(&self->frames_copied);
    }
    return GST_FLOW_OK;
}

/* ---------------------------------------------------------------------------------------------- events */

static void send_end_marker(GstXmemSink *self)
{
    xmem_guard guard;
    xmem_buffer_info info;
    gboolean dropped;
    /* Not while flushing: unlock() ends the waits and the marker is dropped with the stream. */
    for (;;) {
        xmem_status st = xmem_pool_acquire_cpu_wait(self->pool->pool, 1, XMEMGST_WAIT_SLICE_NS, &guard, &info);
        if (st == XMEM_OK)
            break;
        if (st != XMEM_E_TIMEOUT || g_atomic_int_get(&self->unlocked)) {
            GST_WARNING_OBJECT(self, "no end marker sent: %s", xmem_last_error());
            return;
        }
    }
    xmem_description d;
    memset(&d, 0, sizeof d);
    d.flags = XMEM_DESC_TIMESTAMP_NOW;
    d.seq = ++self->seq;
    memcpy(d.content_type, XMEMGST_EOS_CONTENT_TYPE, sizeof XMEMGST_EOS_CONTENT_TYPE);
    ((guint8 *)info.cpu_ptr)[0] = 0;
    if (xmem_guard_set_description(guard, &d) != XMEM_OK) {
        xmem_guard_release(guard);
        return;
    }
    for (;;) {
        xmem_status st = xmem_channel_send(self->channel, guard, XMEMGST_WAIT_SLICE_NS);
        if (st == XMEM_OK)
            return;
        xmem_buffer_info probe;
        if (st != XMEM_E_TIMEOUT || g_atomic_int_get(&self->unlocked)) {
            GST_WARNING_OBJECT(self, "no end marker sent: %s", xmem_last_error());
            if (xmem_guard_info(guard, &probe) == XMEM_OK)
                xmem_guard_release(guard);
            return;
        }
    }
    (void)dropped;
}

static gboolean gst_xmem_sink_event(GstBaseSink *bsink, GstEvent *event)
{
    GstXmemSink *self = GST_XMEM_SINK(bsink);
    if (GST_EVENT_TYPE(event) == GST_EVENT_EOS && self->channel != 0) {
        /* Reported before the end marker (which may wait for room) and the EOS message: `gst-launch-1.0 -v`
           prints them. */
        g_object_notify_by_pspec(G_OBJECT(self), props[PROP_FRAMES_ZERO_COPY]);
        g_object_notify_by_pspec(G_OBJECT(self), props[PROP_FRAMES_COPIED]);
        g_object_notify_by_pspec(G_OBJECT(self), props[PROP_FRAMES_DROPPED]);
        send_end_marker(self);
    }
    return GST_BASE_SINK_CLASS(gst_xmem_sink_parent_class)->event(bsink, event);
}

/* ---------------------------------------------------------------------------------------------- negotiation */

static gboolean gst_xmem_sink_set_caps(GstBaseSink *bsink, GstCaps *caps)
{
    GstXmemSink *self = GST_XMEM_SINK(bsink);
    GError *error = NULL;
    XmemGstLayout layout;
    if (!xmemgst_layout_from_caps(caps, &layout, &error)) {
        XMEMGST_POST_ERROR(self, error);
        return FALSE;
    }
    self->layout = layout;
    self->have_layout = TRUE;
    GST_INFO_OBJECT(self, "caps %" GST_PTR_FORMAT " -> content type %s", caps, layout.description.content_type);
    return TRUE;
}

static gboolean gst_xmem_sink_propose_allocation(GstBaseSink *bsink, GstQuery *query)
{
    GstXmemSink *self = GST_XMEM_SINK(bsink);
    GstCaps *caps = NULL;
    gboolean need_pool = FALSE;
    gst_query_parse_allocation(query, &caps, &need_pool);
    GST_OBJECT_LOCK(self);
    gboolean zero_copy = self->zero_copy;
    GST_OBJECT_UNLOCK(self);
    XmemGstLayout layout;
    if (!zero_copy || self->pool == NULL || caps == NULL || !xmemgst_layout_from_caps(caps, &layout, NULL)
        || layout.kind == XMEMGST_LAYOUT_BYTES || layout.frame_size <= 0 || layout.frame_size > G_MAXUINT)
        return TRUE; /* no pool: upstream brings its memory, render copies */

    GstBufferPool *pool = xmemgst_buffer_pool_new(self->pool);
    GstStructure *config = gst_buffer_pool_get_config(pool);
    gst_buffer_pool_config_set_params(config, caps, (guint)layout.frame_size, 0, 0);
    if (!gst_buffer_pool_set_config(pool, config)) {
        gst_object_unref(pool);
        return TRUE;
    }
    gst_query_add_allocation_pool(query, pool, (guint)layout.frame_size, 0, 0);
    GST_OBJECT_LOCK(self);
    GstBufferPool *old = self->buffer_pool;
    self->buffer_pool = pool;
    GST_OBJECT_UNLOCK(self);
    if (old != NULL)
        gst_object_unref(old);
    return TRUE;
}

/* ---------------------------------------------------------------------------------------------- states */

static gboolean gst_xmem_sink_start(GstBaseSink *bsink)
{
    GstXmemSink *self = GST_XMEM_SINK(bsink);
    GST_OBJECT_LOCK(self);
    gchar *pool_name = g_strdup(self->pool_name), *channel_name = g_strdup(self->channel_name);
    gint capacity = self->capacity, depth = self->depth, mode = self->mode;
    GST_OBJECT_UNLOCK(self);
    gboolean ok = FALSE;
    if (pool_name == NULL || pool_name[0] == '\0') {
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("xmemsink needs a pool: set pool=NAME"), (NULL));
        goto out;
    }
    GError *error = NULL;
    self->pool = xmemgst_pool_open(pool_name, TRUE, capacity, &error);
    if (self->pool == NULL) {
        XMEMGST_POST_ERROR(self, error);
        goto out;
    }
    xmem_status st = xmem_pool_channel(self->pool->pool, channel_name, depth, mode, &self->channel);
    if (st != XMEM_OK) {
        char *what = g_strdup_printf("could not open channel '%s' of xmem pool '%s'", channel_name, pool_name);
        XMEMGST_POST_ERROR(self, xmemgst_error(st, what));
        g_free(what);
        xmemgst_pool_unref(self->pool);
        self->pool = NULL;
        self->channel = 0;
        goto out;
    }
    self->seq = 0;
    self->have_layout = FALSE;
    ok = TRUE;
out:
    g_free(pool_name);
    g_free(channel_name);
    return ok;
}

static gboolean gst_xmem_sink_stop(GstBaseSink *bsink)
{
    GstXmemSink *self = GST_XMEM_SINK(bsink);
    if (self->channel != 0) {
        xmem_channel_close(self->channel);
        self->channel = 0;
    }
    GST_OBJECT_LOCK(self);
    GstBufferPool *pool = self->buffer_pool;
    self->buffer_pool = NULL;
    GST_OBJECT_UNLOCK(self);
    if (pool != NULL)
        gst_object_unref(pool);
    /* Buffers of the buffer pool still upstream hold their own reference to the pool: it closes after them. */
    xmemgst_pool_unref(self->pool);
    self->pool = NULL;
    self->have_layout = FALSE;
    return TRUE;
}

static gboolean gst_xmem_sink_unlock(GstBaseSink *bsink)
{
    g_atomic_int_set(&GST_XMEM_SINK(bsink)->unlocked, 1);
    return TRUE;
}

static gboolean gst_xmem_sink_unlock_stop(GstBaseSink *bsink)
{
    g_atomic_int_set(&GST_XMEM_SINK(bsink)->unlocked, 0);
    return TRUE;
}

/* ---------------------------------------------------------------------------------------------- properties */

static void gst_xmem_sink_set_property(GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
    GstXmemSink *self = GST_XMEM_SINK(object);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_POOL: g_free(self->pool_name); self->pool_name = g_value_dup_string(value); break;
    case PROP_CHANNEL: g_free(self->channel_name); self->channel_name = g_value_dup_string(value); break;
    case PROP_CAPACITY: self->capacity = g_value_get_int(value); break;
    case PROP_DEPTH: self->depth = g_value_get_int(value); break;
    case PROP_MODE: self->mode = g_value_get_enum(value); break;
    case PROP_LEAKY: self->leaky = g_value_get_boolean(value); break;
    case PROP_ZERO_COPY: self->zero_copy = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_xmem_sink_get_property(GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
    GstXmemSink *self = GST_XMEM_SINK(object);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_POOL: g_value_set_string(value, self->pool_name); break;
    case PROP_CHANNEL: g_value_set_string(value, self->channel_name); break;
    case PROP_CAPACITY: g_value_set_int(value, self->capacity); break;
    case PROP_DEPTH: g_value_set_int(value, self->depth); break;
    case PROP_MODE: g_value_set_enum(value, self->mode); break;
    case PROP_LEAKY: g_value_set_boolean(value, self->leaky); break;
    case PROP_ZERO_COPY: g_value_set_boolean(value, self->zero_copy); break;
    case PROP_FRAMES_ZERO_COPY: g_value_set_uint64(value, read_count(&self->frames_zero_copy)); break;
    case PROP_FRAMES_COPIED: g_value_set_uint64(value, read_count(&self->frames_copied)); break;
    case PROP_FRAMES_DROPPED: g_value_set_uint64(value, read_count(&self->frames_dropped)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_xmem_sink_finalize(GObject *object)
{
    GstXmemSink *self = GST_XMEM_SINK(object);
    g_free(self->pool_name);
    g_free(self->channel_name);
    G_OBJECT_CLASS(gst_xmem_sink_parent_class)->finalize(object);
}

static void gst_xmem_sink_class_init(GstXmemSinkClass *klass)
{
    GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
    GstBaseSinkClass *sink_class = GST_BASE_SINK_CLASS(klass);

    gobject_class->set_property = gst_xmem_sink_set_property;
    gobject_class->get_property = gst_xmem_sink_get_property;
    gobject_class->finalize = gst_xmem_sink_finalize;

    GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
    GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;
    props[PROP_POOL] = g_param_spec_string("pool", "Pool", "Name of the xmem pool (opened, or created when absent)",
                                           NULL, rw);
    props[PROP_CHANNEL] = g_param_spec_string("channel", "Channel",
                                              "Name of the pool's channel (opened, or created when absent)",
                                              XMEMGST_DEFAULT_CHANNEL, rw);
    props[PROP_CAPACITY] = g_param_spec_int("capacity", "Capacity", "Slots of the pool, when the sink creates it", 1,
                                            1048576, DEFAULT_CAPACITY, rw);
    props[PROP_DEPTH] = g_param_spec_int("depth", "Depth",
                                         "Messages the channel holds (a power of two; an existing channel must be "
                                         "opened with its own depth)",
                                         1, 65536, DEFAULT_DEPTH, rw);
    props[PROP_MODE] = g_param_spec_enum("mode", "Mode",
                                         "Channel mode (an existing channel must be opened with its own mode)",
                                         XMEMGST_TYPE_CHANNEL_MODE, XMEM_CHANNEL_QUEUE, rw);
    props[PROP_LEAKY] = g_param_spec_boolean("leaky", "Leaky",
                                             "Drop a frame instead of waiting when the channel is full (on the copy path also "
                                             "when the pool is; zero-copy upstream still waits for a free slot)",
                                             FALSE, rw);
    props[PROP_ZERO_COPY] = g_param_spec_boolean("zero-copy", "Zero copy",
                                                 "Offer upstream a buffer pool of xmem buffers (allocation query), so "
                                                 "that it writes straight into shared memory",
                                                 TRUE, rw);
    props[PROP_FRAMES_ZERO_COPY] = g_param_spec_uint64("frames-zero-copy", "Frames zero copy",
                                                       "Frames upstream wrote straight into xmem buffers", 0,
                                                       G_MAXUINT64, 0, ro);
    props[PROP_FRAMES_COPIED] = g_param_spec_uint64("frames-copied", "Frames copied",
                                                    "Frames copied into xmem buffers (upstream brought its own memory)",
                                                    0, G_MAXUINT64, 0, ro);
    props[PROP_FRAMES_DROPPED] = g_param_spec_uint64("frames-dropped", "Frames dropped",
                                                     "Frames dropped because the channel (or pool) was full (leaky)", 0,
                                                     G_MAXUINT64, 0, ro);
    g_object_class_install_properties(gobject_class, N_PROPS, props);

    gst_element_class_set_static_metadata(element_class, "xmem sink", "Sink/Video",
                                          "Sends buffers as described xmem buffers on a channel of an xmem pool",
                                          "xmem");
    gst_element_class_add_static_pad_template(element_class, &sink_template);
    gst_type_mark_as_plugin_api(XMEMGST_TYPE_CHANNEL_MODE, 0);

    sink_class->start = gst_xmem_sink_start;
    sink_class->stop = gst_xmem_sink_stop;
    sink_class->set_caps = gst_xmem_sink_set_caps;
    sink_class->propose_allocation = gst_xmem_sink_propose_allocation;
    sink_class->render = gst_xmem_sink_render;
    sink_class->event = gst_xmem_sink_event;
    sink_class->unlock = gst_xmem_sink_unlock;
    sink_class->unlock_stop = gst_xmem_sink_unlock_stop;
}

static void gst_xmem_sink_init(GstXmemSink *self)
{
    self->channel_name = g_strdup(XMEMGST_DEFAULT_CHANNEL);
    self->capacity = DEFAULT_CAPACITY;
    self->depth = DEFAULT_DEPTH;
    self->mode = XMEM_CHANNEL_QUEUE;
    self->zero_copy = TRUE;
    /* The last sample would keep one xmem buffer (and its slot) held for as long as the sink lives. */
    gst_base_sink_set_last_sample_enabled(GST_BASE_SINK(self), FALSE);
}
