/* xmemsink: GstBuffers out to an xmem channel, described (xmemsink.c). */
#ifndef XMEMSINK_H
#define XMEMSINK_H

#include <gst/base/gstbasesink.h>

#include "xmemgst.h"

G_BEGIN_DECLS

#define GST_TYPE_XMEM_SINK (gst_xmem_sink_get_type())
G_DECLARE_FINAL_TYPE(GstXmemSink, gst_xmem_sink, GST, XMEM_SINK, GstBaseSink)

G_END_DECLS

#endif /* XMEMSINK_H */
