/* An echo client on the homa-rs C API: N calls to the server given, each
 * checked byte for byte, one call to a port where nothing listens (a
 * clear error, not a hang), then "quit". Prints "ok N" on success. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "homa.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SERVER_ADDR COUNT [DEAD_ADDR]\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[2]);
    homa_socket *s;
    int rc = homa_open("127.0.0.1:0", 0, &s);
    if (rc < 0) {
        fprintf(stderr, "homa_open: %s\n", homa_strerror(rc));
        return 1;
    }
    char req[3000], resp[4000];
    for (int i = 0; i < count; i++) {
        size_t len = 1 + (size_t)(i * 97) % sizeof req;
        for (size_t k = 0; k < len; k++)
            req[k] = (char)(i + k);
        int64_t n = homa_call(s, argv[1], req, len, resp, sizeof resp, 5000);
        if (n < 0) {
            fprintf(stderr, "call %d: %s\n", i, homa_strerror((int)n));
            return 1;
        }
        if ((size_t)n != len || memcmp(req, resp, len) != 0) {
            fprintf(stderr, "call %d: %lld bytes back, %zu sent, or different bytes\n", i, (long long)n, len);
            return 1;
        }
    }
    if (argc > 3) {
        int64_t n = homa_call(s, argv[3], "x", 1, resp, sizeof resp, 5000);
        if (n != -ECONNREFUSED) {
            fprintf(stderr, "call to %s: expected -ECONNREFUSED, got %lld (%s)\n", argv[3], (long long)n, homa_strerror((int)n));
            return 1;
        }
        printf("dead port: %s\n", homa_strerror((int)n));
    }
    if (homa_call(s, argv[1], "quit", 4, resp, sizeof resp, 5000) != 4) {
        fprintf(stderr, "quit not echoed\n");
        return 1;
    }
    homa_close(s);
    printf("ok %d\n", count);
    return 0;
}
