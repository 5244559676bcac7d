/* An echo server on the homa-rs C API: prints "listening on ADDR", answers
 * every request with its own bytes, and exits after answering "quit". */
#include <stdio.h>
#include <string.h>
#include "homa.h"

int main(int argc, char **argv) {
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:0";
    homa_socket *s;
    int rc = homa_open(addr, 1, &s);
    if (rc < 0) {
        fprintf(stderr, "homa_open %s: %s\n", addr, homa_strerror(rc));
        return 1;
    }
    char local[64];
    homa_local_addr(s, local, sizeof local);
    printf("listening on %s\n", local);
    fflush(stdout);
    static char buf[1 << 20];
    for (;;) {
        uint64_t id;
        homa_peer peer;
        int64_t n = homa_recv_request(s, buf, sizeof buf, &id, &peer, 10000);
        if (n < 0) {
            fprintf(stderr, "homa_recv_request: %s\n", homa_strerror((int)n));
            homa_close(s);
            return 1;
        }
        size_t len = n < (int64_t)sizeof buf ? (size_t)n : sizeof buf;
        rc = homa_reply(s, &peer, id, buf, len);
        if (rc < 0)
            fprintf(stderr, "homa_reply to %s: %s\n", peer.addr, homa_strerror(rc));
        if (len == 4 && memcmp(buf, "quit", 4) == 0)
            break;
    }
    homa_close(s);
    return 0;
}
