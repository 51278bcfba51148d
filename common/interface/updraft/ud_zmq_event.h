/*  ud_zmq_event.h — reading one event from a ZeroMQ socket monitor (zmq_socket_monitor): the
 *  coordinator logs its workers' connections, a worker watches its CURVE handshake. Header-only,
 *  so that libupdraft itself does not link libzmq; include it where <zmq.h> is available.
 */
#ifndef UD_ZMQ_EVENT_H
#define UD_ZMQ_EVENT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

/* Receives one waiting event from monitor without blocking: *event and *value from the first
   frame (libzmq's 16-bit event and 32-bit value), and the endpoint of the second into where
   (n bytes, NUL-terminated, cut to fit; "?" when absent; where may be NULL). Returns 1 for an
   event, 0 when none is waiting. */
static inline int ud_zmq_event_recv(void *monitor, uint16_t *event, uint32_t *value, char *where,
                                    size_t n)
{
    zmq_msg_t head;
    zmq_msg_init(&head);
    if (zmq_msg_recv(&head, monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&head);
        return 0;
    }
    *event = 0;
    *value = 0;
    if (zmq_msg_size(&head) >= 6) {
        memcpy(event, zmq_msg_data(&head), 2);
        memcpy(value, (char *)zmq_msg_data(&head) + 2, 4);
    }
    int more = zmq_msg_more(&head);
    zmq_msg_close(&head);
    if (where && n)
        snprintf(where, n, "?");
    if (more) { /* the endpoint frame */
        zmq_msg_t addr;
        zmq_msg_init(&addr);
        if (zmq_msg_recv(&addr, monitor, 0) >= 0 && where && n) {
            size_t len = zmq_msg_size(&addr);
            if (len >= n)
                len = n - 1;
            memcpy(where, zmq_msg_data(&addr), len);
            where[len] = '\0';
        }
        zmq_msg_close(&addr);
    }
    return 1;
}

#endif /* UD_ZMQ_EVENT_H */
