/* xmemsrc: xmem channel in to GstBuffers that wrap the shared memory (xmemsrc.c). */
#ifndef XMEMSRC_H
#define XMEMSRC_H

#include <gst/base/gstpushsrc.h>

#include "xmemgst.h"

G_BEGIN_DECLS

#define GST_TYPE_XMEM_SRC (gst_xmem_src_get_type())
G_DECLARE_FINAL_TYPE(GstXmemSrc, gst_xmem_src, GST, XMEM_SRC, GstPushSrc)

G_END_DECLS

#endif /* XMEMSRC_H */
