/*
 * gstxmem.c — the plugin libgstxmem.so: xmemsink and xmemsrc (docs/gstreamer.md).
 */
#include "xmemsink.h"
#include "xmemsrc.h"

#ifndef PACKAGE
#define PACKAGE "xmem"
#endif

static gboolean plugin_init(GstPlugin *plugin)
{
    GST_DEBUG_CATEGORY_INIT(xmemgst_debug, "xmem", 0, "xmem shared-memory elements");
    if (xmem_abi_version() != XMEM_ABI_VERSION) {
        GST_ERROR("libxmem.so has C ABI %u, the plugin was built for %u: rebuild it (scripts/build-native.sh)",
                  xmem_abi_version(), XMEM_ABI_VERSION);
        return FALSE;
    }
    return gst_element_register(plugin, "xmemsink", GST_RANK_NONE, GST_TYPE_XMEM_SINK)
           && gst_element_register(plugin, "xmemsrc", GST_RANK_NONE, GST_TYPE_XMEM_SRC);
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, xmem, "xmem shared-memory buffer pool: xmemsink and xmemsrc",
                  plugin_init, "0.1.0", "unknown", "xmem", "xmem (this repository)")
