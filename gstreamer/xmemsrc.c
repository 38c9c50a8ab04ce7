/*
 * xmemsrc — a live source of the xmem buffers received on a channel of a pool.
 *
 * Each received buffer becomes a GstBuffer of one read-only GstMemory wrapping the shared memory (no copy). The
 * memory owns the guard that owns the received reference: it is released when GStreamer frees the memory, never
 * earlier, and the pool stays attached (XmemGstPool's count) until the last such memory is gone, even after the
 * element stopped (closing the pool would release every guard's reference at once).
 *
 * Caps come from each buffer's description (xmemgst_layout_from_description); a buffer whose caps differ from the
 * last ones sends new caps first (renegotiation). The end marker (XMEMGST_EOS_CONTENT_TYPE) becomes EOS. The
 * trailer, when there is one, gives back PTS, duration and buffer flags (keep-timestamps=true); otherwise buffers are
 * stamped with the pipeline's running time on arrival.
 *
 * Video buffers carry a GstVideoMeta with the producer's strides. Downstream that does not announce GstVideoMeta in
 * the allocation query reads frames in GStreamer's default layout only: a frame of another layout (a tight RGB row
 * from a Python producer, say) is then copied into the default layout (frames-copied), never passed on misread.
 *
 * Receives wait in slices (XMEMGST_WAIT_SLICE_NS) and end with GST_FLOW_FLUSHING after unlock().
 */
#include "xmemsrc.h"

#include <string.h>

#define GST_CAT_DEFAULT xmemgst_debug

struct _GstXmemSrc {
    GstPushSrc parent;

    /* properties (object lock) */
    gchar *pool_name;
    gchar *channel_name;
    gint depth;
    gint mode;
    gboolean keep_timestamps;
    guint spin_us;

    /* between start and stop */
    XmemGstPool *pool;
    xmem_channel channel;
    xmem_subscription subscription; /* fan-out mode */
    GstCaps *caps;                  /* the caps last sent */
    gboolean video_meta_ok;         /* downstream announced GstVideoMeta for these caps */

    gint unlocked; /* atomic */
    guint64 frames_received; /* atomic, relaxed */
    guint64 frames_copied;   /* atomic, relaxed */
};

enum {
    PROP_0,
    PROP_POOL,
    PROP_CHANNEL,
    PROP_DEPTH,
    PROP_MODE,
    PROP_KEEP_TIMESTAMPS,
    PROP_SPIN_US,
    PROP_FRAMES_RECEIVED,
    PROP_FRAMES_COPIED,
    N_PROPS
};
static GParamSpec *props[N_PROPS];

#define DEFAULT_DEPTH 8

/* The flags a producer's buffer may carry over; DISCONT and the like describe this pipeline's own flow. */
#define CARRIED_FLAGS                                                                                              \
    (GST_BUFFER_FLAG_DELTA_UNIT | GST_BUFFER_FLAG_HEADER | GST_BUFFER_FLAG_GAP | GST_BUFFER_FLAG_DROPPABLE          \
     | GST_BUFFER_FLAG_MARKER | GST_BUFFER_FLAG_NON_DROPPABLE)

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS,
                                                                   GST_STATIC_CAPS_ANY);

G_DEFINE_TYPE(GstXmemSrc, gst_xmem_src, GST_TYPE_PUSH_SRC)

/* What a wrapping GstMemory owns. */
typedef struct SrcMemory {
    XmemGstPool *pool;
    xmem_guard guard;
} SrcMemory;

static void src_memory_free(gpointer data)
{
    SrcMemory *m = data;
    xmem_status st = xmem_guard_release(m->guard);
    if (st != XMEM_OK)
        GST_WARNING("xmem_guard_release: %s (%s)", xmem_last_error(), xmem_status_name(st));
    xmemgst_pool_unref(m->pool);
    g_free(m);
}

/* ---------------------------------------------------------------------------------------------- create */

/* Whether downstream takes GstVideoMeta with these caps (asked once per caps). */
static gboolean downstream_takes_video_meta(GstXmemSrc *self, GstCaps *caps)
{
    GstQuery *query = gst_query_new_allocation(caps, FALSE);
    gboolean ok = gst_pad_peer_query(GST_BASE_SRC_PAD(self), query)
                  && gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, NULL);
    gst_query_unref(query);
    return ok;
}

/* Whether the frame's layout is GStreamer's default for its format and size. */
static gboolean default_layout(const GstVideoInfo *v)
{
    GstVideoInfo d;
    if (!gst_video_info_set_format(&d, GST_VIDEO_INFO_FORMAT(v), GST_VIDEO_INFO_WIDTH(v), GST_VIDEO_INFO_HEIGHT(v)))
        return FALSE;
    for (guint i = 0; i < GST_VIDEO_INFO_N_PLANES(v); i++)
        if (d.stride[i] != v->stride[i] || d.offset[i] != v->offset[i])
            return FALSE;
    return TRUE;
}

/* A copy of the frame (at src, in layout v) in the default layout; NULL when GStreamer cannot map it. */
static GstBuffer *copy_to_default_layout(const GstVideoInfo *v, const guint8 *src, gsize size)
{
    GstVideoInfo d;
    if (!gst_video_info_set_format(&d, GST_VIDEO_INFO_FORMAT(v), GST_VIDEO_INFO_WIDTH(v), GST_VIDEO_INFO_HEIGHT(v)))
        return NULL;
    GstBuffer *in = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, (gpointer)src, size, 0, size, NULL, NULL);
    gst_buffer_add_video_meta_full(in, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(v), GST_VIDEO_INFO_WIDTH(v),
                                   GST_VIDEO_INFO_HEIGHT(v), GST_VIDEO_INFO_N_PLANES(v), (gsize *)v->offset,
                                   (gint *)v->stride);
    GstBuffer *out = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(&d), NULL);
    GstVideoFrame fin, fout;
    gboolean ok = FALSE;
    if (gst_video_frame_map(&fin, v, in, GST_MAP_READ)) {
        if (gst_video_frame_map(&fout, &d, out, GST_MAP_WRITE)) {
            ok = gst_video_frame_copy(&fout, &fin);
            gst_video_frame_unmap(&fout);
        }
        gst_video_frame_unmap(&fin);
    }
    gst_buffer_unref(in);
    if (!ok)
        gst_clear_buffer(&out);
    return out;
}

static GstFlowReturn receive(GstXmemSrc *self, xmem_guard *guard, xmem_buffer_info *info)
{
    for (;;) {
        xmem_status st = self->subscription != 0
                             ? xmem_subscription_receive(self->subscription, XMEMGST_WAIT_SLICE_NS, 0, guard, info)
                             : xmem_channel_receive(self->channel, XMEMGST_WAIT_SLICE_NS, 0, guard, info);
        if (st == XMEM_OK)
            return GST_FLOW_OK;
        if (g_atomic_int_get(&self->unlocked))
            return GST_FLOW_FLUSHING;
        if (st == XMEM_E_TIMEOUT)
            continue;
        XMEMGST_POST_ERROR(self, xmemgst_error(st, "could not receive from the xmem channel"));
        return GST_FLOW_ERROR;
    }
}

static GstClockTime running_time_now(GstXmemSrc *self)
{
    GstClock *clock = gst_element_get_clock(GST_ELEMENT(self));
    if (clock == NULL)
        return GST_CLOCK_TIME_NONE;
    GstClockTime now = gst_clock_get_time(clock);
    GstClockTime base = gst_element_get_base_time(GST_ELEMENT(self));
    gst_object_unref(clock);
    return now >= base ? now - base : 0;
}

static GstFlowReturn gst_xmem_src_create(GstPushSrc *psrc, GstBuffer **out)
{
    GstXmemSrc *self = GST_XMEM_SRC(psrc);
    xmem_guard guard = 0;
    xmem_buffer_info info;
    GstFlowReturn ret = receive(self, &guard, &info);
    if (ret != GST_FLOW_OK)
        return ret;

    xmem_description d;
    xmem_status st = xmem_guard_description(guard, &d);
    if (st != XMEM_OK) {
        xmem_guard_release(guard);
        XMEMGST_POST_ERROR(self, xmemgst_error(st, "could not read a received buffer's description"));
        return GST_FLOW_ERROR;
    }
    if ((d.flags & XMEM_DESC_PRESENT) && strncmp(d.content_type, XMEMGST_EOS_CONTENT_TYPE, 32) == 0) {
        xmem_guard_release(guard);
        GST_INFO_OBJECT(self, "end marker received: EOS");
        return GST_FLOW_EOS;
    }
    if (info.cpu_ptr == NULL || (info.flags & XMEM_BUFFER_CUDA)) {
        xmem_guard_release(guard);
        GST_ELEMENT_ERROR(self, STREAM, WRONG_TYPE,
                          ("xmemsrc received a CUDA buffer: it takes CPU buffers only (copy it to the CPU first)"),
                          (NULL));
        return GST_FLOW_ERROR;
    }

    XmemGstSourceLayout l;
    GError *error = NULL;
    if (!xmemgst_layout_from_description(&d, info.size, &l, &error)) {
        xmem_guard_release(guard);
        XMEMGST_POST_ERROR(self, error);
        return GST_FLOW_ERROR;
    }
    if (self->caps == NULL || !gst_caps_is_equal(self->caps, l.caps)) {
        GST_INFO_OBJECT(self, "caps from the description: %" GST_PTR_FORMAT, l.caps);
        /* Asked first: set_caps only stores a sticky event, and a refusal would surface later as a bare
           not-negotiated that does not say which caps. */
        if (!gst_pad_peer_query_accept_caps(GST_BASE_SRC_PAD(self), l.caps)
            || !gst_base_src_set_caps(GST_BASE_SRC(self), l.caps)) {
            char *c = gst_caps_to_string(l.caps);
            xmem_guard_release(guard);
            gst_caps_unref(l.caps);
            GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                              ("downstream refused the caps of the received buffers: %s", c),
                              ("the producer's description (content type '%.31s') decides the caps", d.content_type));
            g_free(c);
            return GST_FLOW_NOT_NEGOTIATED;
        }
        gst_caps_replace(&self->caps, l.caps);
        self->video_meta_ok = l.is_video && downstream_takes_video_meta(self, l.caps);
    }
    gst_caps_unref(l.caps);

    GstBuffer *buffer = NULL;
    gboolean copied = FALSE;
    if (l.is_video && !self->video_meta_ok && !default_layout(&l.vinfo)) {
        buffer = copy_to_default_layout(&l.vinfo, info.cpu_ptr, (gsize)l.data_size);
        if (buffer == NULL) {
            xmem_guard_release(guard);
            GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                              ("xmemsrc could not copy a received frame into GStreamer's default layout"), (NULL));
            return GST_FLOW_ERROR;
        }
        copied = TRUE;
        __atomic_fetch_add(&self->frames_copied, 1, __ATOMIC_RELAXED);
    } else {
        buffer = gst_buffer_new();
    }
    if (copied) {
        /* the trailer is read below, then the guard released */
    } else if (l.data_size > 0) {
        SrcMemory *m = g_new0(SrcMemory, 1);
        m->pool = xmemgst_pool_ref(self->pool);
        m->guard = guard;
        gst_buffer_append_memory(buffer, gst_memory_new_wrapped(GST_MEMORY_FLAG_READONLY, info.cpu_ptr,
                                                                (gsize)l.data_size, 0, (gsize)l.data_size, m,
                                                                src_memory_free));
    }
    if (l.is_video && !copied) {
        GstVideoInfo *v = &l.vinfo;
        gst_buffer_add_video_meta_full(buffer, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(v),
                                       GST_VIDEO_INFO_WIDTH(v), GST_VIDEO_INFO_HEIGHT(v),
                                       GST_VIDEO_INFO_N_PLANES(v), v->offset, v->stride);
    }

    XmemGstTrailer t;
    GST_OBJECT_LOCK(self);
    gboolean keep = self->keep_timestamps;
    GST_OBJECT_UNLOCK(self);
    if (keep && xmemgst_trailer_read(info.cpu_ptr, info.size, l.data_size, &t)) {
        GST_BUFFER_PTS(buffer) = (t.flags & XMEMGST_TRAILER_PTS) ? t.pts : GST_CLOCK_TIME_NONE;
        GST_BUFFER_DURATION(buffer) = (t.flags & XMEMGST_TRAILER_DURATION) ? t.duration : GST_CLOCK_TIME_NONE;
        GST_BUFFER_FLAG_SET(buffer, t.buffer_flags & CARRIED_FLAGS);
    } else {
        GST_BUFFER_PTS(buffer) = running_time_now(self);
    }
    GST_BUFFER_OFFSET(buffer) = d.seq;
    if (copied || l.data_size <= 0)
        xmem_guard_release(guard);
    __atomic_fetch_add(&self->frames_received, 1, __ATOMIC_RELAXED);
    *out = buffer;
    return GST_FLOW_OK;
}

/* ---------------------------------------------------------------------------------------------- states */

static gboolean gst_xmem_src_negotiate(GstBaseSrc *bsrc)
{
    /* The caps come with the first buffer (its description); create() sets them. */
    (void)bsrc;
    return TRUE;
}

static gboolean gst_xmem_src_start(GstBaseSrc *bsrc)
{
    GstXmemSrc *self = GST_XMEM_SRC(bsrc);
    GST_OBJECT_LOCK(self);
    gchar *pool_name = g_strdup(self->pool_name), *channel_name = g_strdup(self->channel_name);
    gint depth = self->depth, mode = self->mode;
    guint spin_us = self->spin_us;
    GST_OBJECT_UNLOCK(self);
    gboolean ok = FALSE;
    GError *error = NULL;
    if (pool_name == NULL || pool_name[0] == '\0') {
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("xmemsrc needs a pool: set pool=NAME"), (NULL));
        goto out;
    }
    self->pool = xmemgst_pool_open(pool_name, FALSE, 0, &error);
    if (self->pool == NULL) {
        XMEMGST_POST_ERROR(self, error);
        goto out;
    }
    xmem_status st = xmem_pool_channel(self->pool->pool, channel_name, depth, mode, &self->channel);
    if (st == XMEM_OK && spin_us != 0)
        st = xmem_channel_set_spin(self->channel, (int64_t)spin_us * 1000);
    if (st == XMEM_OK && mode == XMEM_CHANNEL_FANOUT)
        st = xmem_channel_subscribe(self->channel, &self->subscription);
    if (st != XMEM_OK) {
        char *what = g_strdup_printf("could not open channel '%s' of xmem pool '%s'", channel_name, pool_name);
        XMEMGST_POST_ERROR(self, xmemgst_error(st, what));
        g_free(what);
        if (self->channel != 0)
            xmem_channel_close(self->channel);
        self->channel = 0;
        xmemgst_pool_unref(self->pool);
        self->pool = NULL;
        goto out;
    }
    ok = TRUE;
out:
    g_free(pool_name);
    g_free(channel_name);
    return ok;
}

static gboolean gst_xmem_src_stop(GstBaseSrc *bsrc)
{
    GstXmemSrc *self = GST_XMEM_SRC(bsrc);
    if (self->subscription != 0)
        xmem_subscription_close(self->subscription);
    self->subscription = 0;
    if (self->channel != 0)
        xmem_channel_close(self->channel);
    self->channel = 0;
    gst_caps_replace(&self->caps, NULL);
    /* Buffers still downstream keep the pool attached until they are freed. */
    xmemgst_pool_unref(self->pool);
    self->pool = NULL;
    return TRUE;
}

static gboolean gst_xmem_src_unlock(GstBaseSrc *bsrc)
{
    g_atomic_int_set(&GST_XMEM_SRC(bsrc)->unlocked, 1);
    return TRUE;
}

static gboolean gst_xmem_src_unlock_stop(GstBaseSrc *bsrc)
{
    g_atomic_int_set(&GST_XMEM_SRC(bsrc)->unlocked, 0);
    return TRUE;
}

/* ---------------------------------------------------------------------------------------------- properties */

static void gst_xmem_src_set_property(GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
    GstXmemSrc *self = GST_XMEM_SRC(object);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_POOL: g_free(self->pool_name); self->pool_name = g_value_dup_string(value); break;
    case PROP_CHANNEL: g_free(self->channel_name); self->channel_name = g_value_dup_string(value); break;
    case PROP_DEPTH: self->depth = g_value_get_int(value); break;
    case PROP_MODE: self->mode = g_value_get_enum(value); break;
    case PROP_KEEP_TIMESTAMPS: self->keep_timestamps = g_value_get_boolean(value); break;
    case PROP_SPIN_US: self->spin_us = g_value_get_uint(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_xmem_src_get_property(GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
    GstXmemSrc *self = GST_XMEM_SRC(object);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_POOL: g_value_set_string(value, self->pool_name); break;
    case PROP_CHANNEL: g_value_set_string(value, self->channel_name); break;
    case PROP_DEPTH: g_value_set_int(value, self->depth); break;
    case PROP_MODE: g_value_set_enum(value, self->mode); break;
    case PROP_KEEP_TIMESTAMPS: g_value_set_boolean(value, self->keep_timestamps); break;
    case PROP_SPIN_US: g_value_set_uint(value, self->spin_us); break;
    case PROP_FRAMES_RECEIVED:
        g_value_set_uint64(value, __atomic_load_n(&self->frames_received, __ATOMIC_RELAXED));
        break;
    case PROP_FRAMES_COPIED:
        g_value_set_uint64(value, __atomic_load_n(&self->frames_copied, __ATOMIC_RELAXED));
        break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_xmem_src_finalize(GObject *object)
{
    GstXmemSrc *self = GST_XMEM_SRC(object);
    g_free(self->pool_name);
    g_free(self->channel_name);
    G_OBJECT_CLASS(gst_xmem_src_parent_class)->finalize(object);
}

static void gst_xmem_src_class_init(GstXmemSrcClass *klass)
{
    GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
    GstBaseSrcClass *basesrc_class = GST_BASE_SRC_CLASS(klass);
    GstPushSrcClass *pushsrc_class = GST_PUSH_SRC_CLASS(klass);

    gobject_class->set_property = gst_xmem_src_set_property;
    gobject_class->get_property = gst_xmem_src_get_property;
    gobject_class->finalize = gst_xmem_src_finalize;

    GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
    props[PROP_POOL] = g_param_spec_string("pool", "Pool", "Name of the xmem pool (it must exist)", NULL, rw);
    props[PROP_CHANNEL] = g_param_spec_string("channel", "Channel",
                                              "Name of the pool's channel (opened, or created when absent)",
                                              XMEMGST_DEFAULT_CHANNEL, rw);
    props[PROP_DEPTH] = g_param_spec_int("depth", "Depth",
                                         "Messages the channel holds (a power of two; an existing channel must be "
                                         "opened with its own depth)",
                                         1, 65536, DEFAULT_DEPTH, rw);
    props[PROP_MODE] = g_param_spec_enum("mode", "Mode",
                                         "Channel mode (fanout: this source subscribes and gets every buffer)",
                                         XMEMGST_TYPE_CHANNEL_MODE, XMEM_CHANNEL_QUEUE, rw);
    props[PROP_KEEP_TIMESTAMPS] = g_param_spec_boolean(
        "keep-timestamps", "Keep timestamps",
        "Give buffers the PTS, duration and flags the producing xmemsink sent (else: the running time on arrival)",
        TRUE, rw);
    props[PROP_SPIN_US] = g_param_spec_uint(
        "spin-us", "Spin (µs)",
        "Microseconds a receive that finds the channel empty spins on its CPU before it sleeps in the kernel (0: sleep "
        "at once). Spinning sees a frame within about a microsecond instead of a kernel wake-up's tens, and keeps "
        "the streaming thread's CPU busy meanwhile",
        0, 1000000, 0, rw);
    props[PROP_FRAMES_RECEIVED] = g_param_spec_uint64("frames-received", "Frames received",
                                                      "Buffers received (end markers not counted)", 0, G_MAXUINT64, 0,
                                                      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
    props[PROP_FRAMES_COPIED] = g_param_spec_uint64(
        "frames-copied", "Frames copied",
        "Frames copied into GStreamer's default layout because downstream takes no GstVideoMeta", 0, G_MAXUINT64, 0,
        G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
    g_object_class_install_properties(gobject_class, N_PROPS, props);

    gst_element_class_set_static_metadata(element_class, "xmem source", "Source/Video",
                                          "Receives xmem buffers from a channel of an xmem pool, without a copy",
                                          "xmem");
    gst_element_class_add_static_pad_template(element_class, &src_template);

    basesrc_class->start = gst_xmem_src_start;
    basesrc_class->stop = gst_xmem_src_stop;
    basesrc_class->negotiate = gst_xmem_src_negotiate;
    basesrc_class->unlock = gst_xmem_src_unlock;
    basesrc_class->unlock_stop = gst_xmem_src_unlock_stop;
    pushsrc_class->create = gst_xmem_src_create;
}

static void gst_xmem_src_init(GstXmemSrc *self)
{
    self->channel_name = g_strdup(XMEMGST_DEFAULT_CHANNEL);
    self->depth = DEFAULT_DEPTH;
    self->mode = XMEM_CHANNEL_QUEUE;
    self->keep_timestamps = TRUE;
    gst_base_src_set_live(GST_BASE_SRC(self), TRUE);
    gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
}
