/*
 * xmemgst.c — the caps <-> description mapping, the frame trailer and the shared pool handle (see xmemgst.h).
 */
#include "xmemgst.h"

#include <stdio.h>
#include <string.h>

GST_DEBUG_CATEGORY(xmemgst_debug);
#define GST_CAT_DEFAULT xmemgst_debug

/* ---------------------------------------------------------------------------------------------- properties */

GType xmemgst_channel_mode_get_type(void)
{
    static gsize type = 0;
    static const GEnumValue values[] = {
        {XMEM_CHANNEL_QUEUE, "Each buffer goes to one receiver", "queue"},
        {XMEM_CHANNEL_FANOUT, "Each buffer goes to every subscriber", "fanout"},
        {0, NULL, NULL},
    };
    if (g_once_init_enter(&type)) {
        GType t = g_enum_register_static("GstXmemChannelMode", values);
        g_once_init_leave(&type, t);
    }
    return (GType)type;
}

/* ---------------------------------------------------------------------------------------------- errors */

GError *xmemgst_error(xmem_status status, const char *what)
{
    GstResourceError code;
    switch (status) {
    case XMEM_E_NOT_FOUND: code = GST_RESOURCE_ERROR_NOT_FOUND; break;
    case XMEM_E_PERMISSION_DENIED: code = GST_RESOURCE_ERROR_NOT_AUTHORIZED; break;
    case XMEM_E_INVALID_ARGUMENT:
    case XMEM_E_INVALID_NAME: code = GST_RESOURCE_ERROR_SETTINGS; break;
    case XMEM_E_OUT_OF_MEMORY: code = GST_RESOURCE_ERROR_NO_SPACE_LEFT; break;
    default: code = GST_RESOURCE_ERROR_FAILED; break;
    }
    return g_error_new(GST_RESOURCE_ERROR, code, "%s: %s (%s)", what, xmem_last_error(), xmem_status_name(status));
}

/* ---------------------------------------------------------------------------------------------- shared pool */

XmemGstPool *xmemgst_pool_open(const char *name, gboolean create, gint capacity, GError **error)
{
    xmem_pool pool = 0;
    xmem_status st = XMEM_OK;
    /* Open, else create, else (another process created it in between) open again: creating never replaces a pool. */
    for (int attempt = 0; attempt < 3; attempt++) {
        st = xmem_pool_open(name, &pool);
        if (st != XMEM_E_NOT_FOUND || !create)
            break;
        st = xmem_pool_create(name, capacity, 0600, 0, &pool);
        if (st != XMEM_E_ALREADY_EXISTS)
            break;
    }
    if (st != XMEM_OK) {
        char *what = st == XMEM_E_NOT_FOUND
                         ? g_strdup_printf("no xmem pool '%s' (start its producer first, or create the pool)", name)
                         : g_strdup_printf("could not open xmem pool '%s'", name);
        g_propagate_error(error, xmemgst_error(st, what));
        g_free(what);
        return NULL;
    }
    XmemGstPool *p = g_new0(XmemGstPool, 1);
    p->refs = 1;
    p->pool = pool;
    return p;
}

XmemGstPool *xmemgst_pool_ref(XmemGstPool *p)
{
    g_atomic_int_inc(&p->refs);
    return p;
}

void xmemgst_pool_unref(XmemGstPool *p)
{
    /* g_atomic_int_dec_and_test is a full barrier: every use of the pool by the dropping holders happens before
       the close. */
    if (p != NULL && g_atomic_int_dec_and_test(&p->refs)) {
        xmem_status st = xmem_pool_close(p->pool);
        if (st != XMEM_OK)
            GST_WARNING("xmem_pool_close: %s (%s)", xmem_last_error(), xmem_status_name(st));
        g_free(p);
    }
}

/* ---------------------------------------------------------------------------------------------- trailer */

void xmemgst_trailer_write(guint8 *base, gint64 size, GstBuffer *buffer, gboolean zero_copy)
{
    XmemGstTrailer t = {0};
    t.magic = GUINT32_TO_LE(XMEMGST_TRAILER_MAGIC);
    guint32 flags = zero_copy ? XMEMGST_TRAILER_ZERO_COPY : 0;
    if (GST_BUFFER_PTS_IS_VALID(buffer)) {
        flags |= XMEMGST_TRAILER_PTS;
        t.pts = GUINT64_TO_LE(GST_BUFFER_PTS(buffer));
    }
    if (GST_BUFFER_DURATION_IS_VALID(buffer)) {
        flags |= XMEMGST_TRAILER_DURATION;
        t.duration = GUINT64_TO_LE(GST_BUFFER_DURATION(buffer));
    }
    t.flags = GUINT32_TO_LE(flags);
    t.buffer_flags = GUINT32_TO_LE(GST_BUFFER_FLAGS(buffer));
    memcpy(base + size - XMEMGST_TRAILER_SIZE, &t, sizeof t);
}

gboolean xmemgst_trailer_read(const guint8 *base, gint64 size, gint64 tensor_end, XmemGstTrailer *out)
{
    if (size < XMEMGST_TRAILER_SIZE || tensor_end < 0 || tensor_end > size - XMEMGST_TRAILER_SIZE)
        return FALSE;
    XmemGstTrailer t;
    /* One copy out of shared memory; only the copy is looked at (another process may write meanwhile). */
    memcpy(&t, base + size - XMEMGST_TRAILER_SIZE, sizeof t);
    if (GUINT32_FROM_LE(t.magic) != XMEMGST_TRAILER_MAGIC)
        return FALSE;
    out->magic = XMEMGST_TRAILER_MAGIC;
    out->flags = GUINT32_FROM_LE(t.flags);
    out->buffer_flags = GUINT32_FROM_LE(t.buffer_flags);
    out->reserved = 0;
    out->pts = GUINT64_FROM_LE(t.pts);
    out->duration = GUINT64_FROM_LE(t.duration);
    return TRUE;
}

/* ---------------------------------------------------------------------------------------------- caps -> description */

/* The packed formats described as (height, width, channels) of uint8, or (height, width) for the gray ones. */
static gboolean packed_format(GstVideoFormat format, int32_t *dtype, int *channels)
{
    switch (format) {
    case GST_VIDEO_FORMAT_RGB:
    case GST_VIDEO_FORMAT_BGR: *dtype = XMEM_DTYPE_UINT8; *channels = 3; return TRUE;
    case GST_VIDEO_FORMAT_RGBA:
    case GST_VIDEO_FORMAT_BGRA:
    case GST_VIDEO_FORMAT_RGBx:
    case GST_VIDEO_FORMAT_BGRx:
    case GST_VIDEO_FORMAT_ARGB:
    case GST_VIDEO_FORMAT_ABGR:
    case GST_VIDEO_FORMAT_xRGB:
    case GST_VIDEO_FORMAT_xBGR: *dtype = XMEM_DTYPE_UINT8; *channels = 4; return TRUE;
    case GST_VIDEO_FORMAT_GRAY8: *dtype = XMEM_DTYPE_UINT8; *channels = 1; return TRUE;
    case GST_VIDEO_FORMAT_GRAY16_LE: *dtype = XMEM_DTYPE_UINT16; *channels = 1; return TRUE;
    default: return FALSE;
    }
}

static gboolean set_content_type(char dst[32], const char *value, GError **error)
{
    size_t n = strlen(value);
    if (n > 31) {
        g_set_error(error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION,
                    "xmem cannot describe these caps: the content type '%s' is longer than the 31 bytes a "
                    "description holds (wrap the stream in gdppay/gdpdepay to carry any caps)",
                    value);
        return FALSE;
    }
    memset(dst, 0, 32);
    memcpy(dst, value, n);
    return TRUE;
}

gboolean xmemgst_layout_from_caps(GstCaps *caps, XmemGstLayout *out, GError **error)
{
    memset(out, 0, sizeof *out);
    if (caps == NULL || gst_caps_get_size(caps) != 1 || !gst_caps_is_fixed(caps)) {
        g_set_error(error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION, "xmemsink needs fixed caps");
        return FALSE;
    }
    GstCapsFeatures *features = gst_caps_get_features(caps, 0);
    if (features != NULL && !gst_caps_features_is_any(features) &&
        !gst_caps_features_is_equal(features, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY)) {
        char *f = gst_caps_features_to_string(features);
        g_set_error(error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION,
                    "xmem cannot describe caps with memory features (%s): only system memory can go into xmem "
                    "buffers; download first (e.g. with a *download element or videoconvert)",
                    f);
        g_free(f);
        return FALSE;
    }
    GstStructure *s = gst_caps_get_structure(caps, 0);
    const char *media = gst_structure_get_name(s);
    xmem_description *d = &out->description;

    if (g_strcmp0(media, "video/x-raw") != 0) {
        out->kind = XMEMGST_LAYOUT_BYTES;
        d->dtype = XMEM_DTYPE_UINT8;
        d->ndim = 1;
        d->strides[0] = 1;
        return set_content_type(d->content_type, media, error);
    }

    if (!gst_video_info_from_caps(&out->vinfo, caps)) {
        char *c = gst_caps_to_string(caps);
        g_set_error(error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION, "xmemsink cannot parse the raw video caps %s", c);
        g_free(c);
        return FALSE;
    }
    GstVideoInfo *v = &out->vinfo;
    GstVideoFormat format = GST_VIDEO_INFO_FORMAT(v);
    int width = GST_VIDEO_INFO_WIDTH(v), height = GST_VIDEO_INFO_HEIGHT(v);
    out->frame_size = (gint64)GST_VIDEO_INFO_SIZE(v);
    char content[64];
    g_snprintf(content, sizeof content, "video/%s;w=%d;h=%d", gst_video_format_to_string(format), width, height);
    if (!set_content_type(d->content_type, content, error))
        return FALSE;

    int channels = 0;
    int32_t dtype = 0;
    if (packed_format(format, &dtype, &channels)) {
        int item = dtype == XMEM_DTYPE_UINT16 ? 2 : 1;
        out->kind = XMEMGST_LAYOUT_VIDEO_PACKED;
        d->dtype = dtype;
        d->shape[0] = height;
        d->shape[1] = width;
        d->strides[0] = GST_VIDEO_INFO_PLANE_STRIDE(v, 0);
        d->strides[1] = (int64_t)channels * item;
        if (channels == 1) {
            d->ndim = 2;
        } else {
            d->ndim = 3;
            d->shape[2] = channels;
            d->strides[2] = item;
        }
    } else {
        out->kind = XMEMGST_LAYOUT_VIDEO_BYTES;
        d->dtype = XMEM_DTYPE_UINT8;
        d->ndim = 1;
        d->shape[0] = out->frame_size;
        d->strides[0] = 1;
    }
    return TRUE;
}

/* ---------------------------------------------------------------------------------------------- description -> caps */

static gint64 itemsize_of(int32_t dtype)
{
    switch (dtype) {
    case XMEM_DTYPE_UINT8: case XMEM_DTYPE_INT8: case XMEM_DTYPE_BOOL: return 1;
    case XMEM_DTYPE_UINT16: case XMEM_DTYPE_INT16: case XMEM_DTYPE_FLOAT16: case XMEM_DTYPE_BFLOAT16: return 2;
    case XMEM_DTYPE_INT32: case XMEM_DTYPE_FLOAT32: return 4;
    case XMEM_DTYPE_INT64: case XMEM_DTYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* The bytes the tensor spans from the buffer's start; -1 when the description is not a sane tensor. The core
   validated it against the buffer already; this is checked again because a wrong number here would be a read past
   the buffer. */
static gint64 tensor_extent(const xmem_description *d)
{
    gint64 item = itemsize_of(d->dtype);
    if (item == 0 || d->ndim < 0 || d->ndim > 8)
        return -1;
    gint64 end = item;
    for (int i = 0; i < d->ndim; i++) {
        if (d->shape[i] < 0 || d->strides[i] < 0 || d->shape[i] > G_MAXINT32 || d->strides[i] > G_MAXINT32)
            return -1;
        if (d->shape[i] == 0)
            return 0;
        end += (d->shape[i] - 1) * d->strides[i];
    }
    return end;
}

static gboolean bad_description(GError **error, const char *why, const char *content_type)
{
    g_set_error(error, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT,
                "xmemsrc received a buffer whose description does not fit its content type '%s': %s", content_type, why);
    return FALSE;
}

/* Video of the given format and size whose first plane has the tensor's row stride (packed tensors). */
static gboolean video_from_packed_tensor(const xmem_description *d, GstVideoFormat format, gint64 buffer_size,
                                         XmemGstSourceLayout *out, GError **error, const char *ct)
{
    int32_t dtype;
    int channels;
    if (!packed_format(format, &dtype, &channels) || d->dtype != dtype)
        return bad_description(error, "the element type is not the format's", ct);
    gint64 item = itemsize_of(dtype);
    gboolean ok = (channels == 1 && (d->ndim == 2 || (d->ndim == 3 && d->shape[2] == 1)))
                  || (channels > 1 && d->ndim == 3 && d->shape[2] == channels && d->strides[2] == item);
    if (!ok || d->strides[1] != item * channels || d->shape[0] < 1 || d->shape[1] < 1)
        return bad_description(error, "not (height, width[, channels]) of packed pixels", ct);
    gint64 height = d->shape[0], width = d->shape[1], stride = d->strides[0];
    if (stride < width * item * channels)
        return bad_description(error, "the row stride is shorter than a row", ct);
    if (!gst_video_info_set_format(&out->vinfo, format, (guint)width, (guint)height))
        return bad_description(error, "GStreamer refuses this size", ct);
    out->vinfo.stride[0] = (gint)stride;
    out->vinfo.offset[0] = 0;
    /* A whole number of rows when the buffer has them (what GStreamer's frame mapping expects), else the extent. */
    gint64 rows = stride * height;
    out->data_size = rows <= buffer_size ? rows : tensor_extent(d);
    out->vinfo.size = (gsize)out->data_size;
    return TRUE;
}

gboolean xmemgst_layout_from_description(const xmem_description *d, gint64 buffer_size, XmemGstSourceLayout *out,
                                         GError **error)
{
    memset(out, 0, sizeof *out);
    gboolean present = d != NULL && (d->flags & XMEM_DESC_PRESENT) != 0;
    char ct[32] = "";
    if (present)
        memcpy(ct, d->content_type, 31); /* ct[31] stays NUL whatever shared memory held */
    gboolean tensor = present && d->dtype != XMEM_DTYPE_NONE;
    gint64 extent = tensor ? tensor_extent(d) : buffer_size;
    if (extent < 0 || extent > buffer_size)
        return bad_description(error, "the tensor does not lie within the buffer", ct);

    char fmt[32];
    int w = 0, h = 0, consumed = 0;
    if (tensor && sscanf(ct, "video/%31[^;];w=%d;h=%d%n", fmt, &w, &h, &consumed) == 3 && ct[consumed] == '\0') {
        GstVideoFormat format = gst_video_format_from_string(fmt);
        if (format == GST_VIDEO_FORMAT_UNKNOWN || w < 1 || h < 1)
            return bad_description(error, "unknown video format or size", ct);
        int32_t dtype;
        int channels;
        out->is_video = TRUE;
        if (packed_format(format, &dtype, &channels) && d->ndim >= 2) {
            if (!video_from_packed_tensor(d, format, buffer_size, out, error, ct))
                return FALSE;
            if (d->shape[0] != h || d->shape[1] != w)
                return bad_description(error, "the tensor's height and width are not the content type's", ct);
        } else {
            /* Bytes in GStreamer's default layout for the format and size. */
            if (!gst_video_info_set_format(&out->vinfo, format, (guint)w, (guint)h))
                return bad_description(error, "GStreamer refuses this format and size", ct);
            if (d->dtype != XMEM_DTYPE_UINT8 || d->ndim != 1 || d->strides[0] != 1
                || d->shape[0] < (gint64)GST_VIDEO_INFO_SIZE(&out->vinfo))
                return bad_description(error, "the bytes are fewer than a frame of that format and size", ct);
            out->data_size = (gint64)GST_VIDEO_INFO_SIZE(&out->vinfo);
        }
    } else if (tensor && d->ndim >= 2 && d->ndim <= 3) {
        /* A tensor from a producer that did not name a GStreamer format: the usual image shapes. */
        GstVideoFormat format = GST_VIDEO_FORMAT_UNKNOWN;
        gint64 c = d->ndim == 3 ? d->shape[2] : 1;
        gboolean bgr = strstr(ct, "bgr") != NULL || strstr(ct, "BGR") != NULL;
        if (d->dtype == XMEM_DTYPE_UINT8 && c == 3)
            format = bgr ? GST_VIDEO_FORMAT_BGR : GST_VIDEO_FORMAT_RGB;
        else if (d->dtype == XMEM_DTYPE_UINT8 && c == 4)
            format = bgr ? GST_VIDEO_FORMAT_BGRA : GST_VIDEO_FORMAT_RGBA;
        else if (d->dtype == XMEM_DTYPE_UINT8 && c == 1)
            format = GST_VIDEO_FORMAT_GRAY8;
        else if (d->dtype == XMEM_DTYPE_UINT16 && c == 1)
            format = GST_VIDEO_FORMAT_GRAY16_LE;
        if (format != GST_VIDEO_FORMAT_UNKNOWN) {
            GError *ignored = NULL;
            out->is_video = video_from_packed_tensor(d, format, buffer_size, out, &ignored, ct);
            g_clear_error(&ignored); /* not an image after all: bytes */
        }
    }

    if (out->is_video) {
        out->caps = gst_video_info_to_caps(&out->vinfo);
        /* The producer's frame rate is not carried: variable. */
        gst_caps_set_simple(out->caps, "framerate", GST_TYPE_FRACTION, 0, 1, NULL);
        return TRUE;
    }

    out->data_size = extent;
    GstCaps *caps = NULL;
    if (ct[0] != '\0' && strchr(ct, ',') == NULL && strchr(ct, ';') == NULL && strchr(ct, '(') == NULL) {
        caps = gst_caps_from_string(ct);
        if (caps != NULL && (gst_caps_get_size(caps) != 1 || gst_caps_is_any(caps))) {
            gst_caps_unref(caps);
            caps = NULL;
        }
    }
    out->caps = caps != NULL ? caps : gst_caps_new_empty_simple("application/octet-stream");
    return TRUE;
}
