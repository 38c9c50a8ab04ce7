/*
 * state_cycles — drives a pipeline through PLAYING -> NULL -> PLAYING cycles, for tests/python/test_gstreamer.py
 * (gst-launch-1.0 cannot change states). Each cycle: PLAYING, wait until the uint64 property PROPERTY of the element
 * named ELEMENT has grown by TARGET since the cycle began (the counters of xmemsink/xmemsrc are cumulative), then
 * NULL. Errors on the
 * bus fail the run; an alarm ends a run that hangs (a state change that does not return is the bug it looks for).
 *
 * Usage: state_cycles PIPELINE ELEMENT PROPERTY TARGET CYCLES      prints "cycle N" after each NULL; exit 0 on success
 */
#include <gst/gst.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int fail_on_error(GstBus *bus)
{
    GstMessage *m;
    while ((m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) != NULL) {
        GError *e = NULL;
        gchar *dbg = NULL;
        gst_message_parse_error(m, &e, &dbg);
        fprintf(stderr, "state_cycles: error: %s (%s)\n", e->message, dbg ? dbg : "");
        g_clear_error(&e);
        g_free(dbg);
        gst_message_unref(m);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    gst_init(&argc, &argv);
    if (argc != 6) {
        fprintf(stderr, "usage: state_cycles PIPELINE ELEMENT PROPERTY TARGET CYCLES\n");
        return 2;
    }
    alarm(120); /* watchdog: the default SIGALRM action ends the process */
    GError *error = NULL;
    GstElement *pipeline = gst_parse_launch(argv[1], &error);
    if (pipeline == NULL) {
        fprintf(stderr, "state_cycles: %s\n", error->message);
        return 2;
    }
    GstElement *element = gst_bin_get_by_name(GST_BIN(pipeline), argv[2]);
    if (element == NULL) {
        fprintf(stderr, "state_cycles: no element named %s\n", argv[2]);
        return 2;
    }
    guint64 target = g_ascii_strtoull(argv[4], NULL, 10);
    int cycles = atoi(argv[5]);
    GstBus *bus = gst_element_get_bus(pipeline);
    for (int c = 1; c <= cycles; c++) {
        guint64 start = 0;
        g_object_get(element, argv[3], &start, NULL);
        if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE || fail_on_error(bus))
            return 1;
        for (;;) {
            guint64 value = 0;
            g_object_get(element, argv[3], &value, NULL);
            if (value >= start + target)
                break;
            if (fail_on_error(bus))
                return 1;
            g_usleep(10 * 1000);
        }
        if (gst_element_set_state(pipeline, GST_STATE_NULL) == GST_STATE_CHANGE_FAILURE)
            return 1;
        gst_bus_set_flushing(bus, TRUE); /* messages of the stopped run are of no interest */
        gst_bus_set_flushing(bus, FALSE);
        printf("cycle %d\n", c);
        fflush(stdout);
    }
    gst_object_unref(bus);
    gst_object_unref(element);
    gst_object_unref(pipeline);
    return 0;
}
