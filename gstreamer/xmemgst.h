/*
 * xmemgst.h — what xmemsink and xmemsrc share: the caps <-> description mapping, the frame trailer that carries
 * GStreamer's timing, and a reference-counted pool handle that outlives the element while buffers still use it.
 *
 * The plugin is a client of the C ABI like any other (include/xmem.h only). docs/gstreamer.md is the user's view of
 * the conventions defined here; the two must agree.
 */
#ifndef XMEMGST_H
#define XMEMGST_H

#include <gst/gst.h>
#include <gst/video/video.h>

#include "xmem.h"

G_BEGIN_DECLS

GST_DEBUG_CATEGORY_EXTERN(xmemgst_debug);

/* Waits are sliced so that flushing, state changes and a closed pool are noticed within this long. */
#define XMEMGST_WAIT_SLICE_NS (100 * 1000 * 1000LL)

/* The content type of the end marker: a 1-byte buffer without a tensor, the same end-of-stream buffer `xmem demo`
   sends (docs/cli.md). xmemsink sends it on EOS, any producer may; xmemsrc turns it into EOS. */
#define XMEMGST_EOS_CONTENT_TYPE "application/x-xmem-end"

/* ---------------------------------------------------------------------------------------------- frame trailer */

/* The last XMEMGST_TRAILER_SIZE bytes of every buffer xmemsink sends, after the described tensor (which never
   reaches into them): GStreamer's timing, for xmemsrc (or any consumer) to read back. Little-endian. A producer
   that does not write one leaves the magic wrong, and xmemsrc then stamps buffers itself. It is read from shared
   memory another process writes: every field is taken as untrusted data (no field is used as a size or offset). */
#define XMEMGST_TRAILER_SIZE 32
#define XMEMGST_TRAILER_MAGIC 0x54534758u /* "XGST" */

#define XMEMGST_TRAILER_PTS       0x1u /* pts is valid */
#define XMEMGST_TRAILER_DURATION  0x2u /* duration is valid */
#define XMEMGST_TRAILER_ZERO_COPY 0x4u /* upstream wrote straight into this xmem buffer (no copy in xmemsink) */

typedef struct XmemGstTrailer {
    guint32 magic;        /* XMEMGST_TRAILER_MAGIC */
    guint32 flags;        /* XMEMGST_TRAILER_* */
    guint32 buffer_flags; /* the GstBuffer's GstBufferFlags (DELTA_UNIT, DISCONT, ...) */
    guint32 reserved;     /* 0 */
    guint64 pts;          /* ns */
    guint64 duration;     /* ns */
} XmemGstTrailer;

G_STATIC_ASSERT(sizeof(XmemGstTrailer) == XMEMGST_TRAILER_SIZE);

/* Writes the trailer of `buffer` at the end of the xmem buffer (base, size >= XMEMGST_TRAILER_SIZE). */
void xmemgst_trailer_write(guint8 *base, gint64 size, GstBuffer *buffer, gboolean zero_copy);

/* Reads the trailer of an xmem buffer whose tensor ends at tensor_end; FALSE when there is none (too small, the
   tensor reaches into it, or the magic is wrong). */
gboolean xmemgst_trailer_read(const guint8 *base, gint64 size, gint64 tensor_end, XmemGstTrailer *out);

/* ---------------------------------------------------------------------------------------------- caps mapping */

typedef enum {
    XMEMGST_LAYOUT_VIDEO_PACKED, /* one plane: (height, width, channels) or (height, width), with the row stride */
    XMEMGST_LAYOUT_VIDEO_BYTES,  /* raw video of more planes: (size,) bytes, GStreamer's default plane layout */
    XMEMGST_LAYOUT_BYTES,        /* any other caps: each buffer as (size,) bytes, the media type as content type */
} XmemGstLayoutKind;

/* What xmemsink makes of its caps: the description every buffer gets (seq and timestamp added per buffer). */
typedef struct XmemGstLayout {
    XmemGstLayoutKind kind;
    GstVideoInfo vinfo;            /* VIDEO_*: the caps' video info, in GStreamer's default layout */
    gint64 frame_size;             /* VIDEO_*: bytes of a frame in that layout */
    xmem_description description;  /* dtype, ndim, shape, strides, content_type (BYTES: shape set per buffer) */
} XmemGstLayout;

/* Maps caps to a layout. FALSE with *error set (GST_CORE_ERROR_NEGOTIATION) when the description cannot express
   them: memory other than system memory, a media type longer than 31 bytes, unparsable raw video. */
gboolean xmemgst_layout_from_caps(GstCaps *caps, XmemGstLayout *out, GError **error);

/* What xmemsrc makes of a received description. */
typedef struct XmemGstSourceLayout {
    gboolean is_video;
    GstVideoInfo vinfo;  /* is_video: format, width, height and the buffer's own strides/offsets */
    gint64 data_size;    /* bytes of the tensor (or of the buffer, without a tensor) */
    GstCaps *caps;       /* owned */
} XmemGstSourceLayout;

/* Maps a received description (NULL or not PRESENT: undescribed) of a buffer of buffer_size bytes to caps. FALSE
   with *error set when a video content type does not match the tensor it came with. */
gboolean xmemgst_layout_from_description(const xmem_description *d, gint64 buffer_size, XmemGstSourceLayout *out,
                                         GError **error);

/* ---------------------------------------------------------------------------------------------- shared pool */

/* An attached pool shared by an element and the GstMemory objects that wrap its buffers: the pool is closed when the
   last of them lets go, so a buffer downstream never outlives the reference it holds (xmem_pool_close would release
   it early). */
typedef struct XmemGstPool {
    gint refs; /* atomic */
    xmem_pool pool;
} XmemGstPool;

/* Opens `name`, or creates it with `capacity` slots (0600, not persistent) when create is TRUE and it does not exist.
   On failure returns NULL with *status and a message (from xmem_last_error) in *error. */
XmemGstPool *xmemgst_pool_open(const char *name, gboolean create, gint capacity, GError **error);
XmemGstPool *xmemgst_pool_ref(XmemGstPool *p);
void xmemgst_pool_unref(XmemGstPool *p);

/* The xmem error of the calling thread's last failure, as a GError in the GST_RESOURCE_ERROR domain:
   "<what>: <xmem's message> (<status name>)". */
GError *xmemgst_error(xmem_status status, const char *what);

/* Posts *error as an element error (and frees it). */
#define XMEMGST_POST_ERROR(element, error)                                                                          \
    do {                                                                                                           \
        GError *xmemgst_e_ = (error);                                                                              \
        gst_element_message_full(GST_ELEMENT(element), GST_MESSAGE_ERROR, xmemgst_e_->domain, xmemgst_e_->code,    \
                                 g_strdup(xmemgst_e_->message), NULL, __FILE__, GST_FUNCTION, __LINE__);           \
        g_error_free(xmemgst_e_);                                                                                  \
    } while (0)

/* ---------------------------------------------------------------------------------------------- properties */

/* The `mode` property of both elements: XMEM_CHANNEL_QUEUE or XMEM_CHANNEL_FANOUT. */
GType xmemgst_channel_mode_get_type(void);
#define XMEMGST_TYPE_CHANNEL_MODE (xmemgst_channel_mode_get_type())

/* Channel names: 1-48 of [A-Za-z0-9._-], not starting with '.'. */
#define XMEMGST_DEFAULT_CHANNEL "frames"

G_END_DECLS

#endif /* XMEMGST_H */
