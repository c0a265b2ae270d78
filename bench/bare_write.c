/*
 * The floor of the `raw` unix path: one frame, as taskbench publishes it, written back to back with one
 * write() each to a reader thread over a Unix stream socket, with nothing else (no runtime, no ids renewed,
 * no timing, no recording). bench/floor-raw.sh builds it, gives it the frame taskbench wrote, and
 * alternates it with `taskbench run` on the same path.
 *
 *     cc -O2 -pthread -o bare_write bench/bare_write.c
 *     ./bare_write FRAME_FILE [FRAMES] [WARMUP]      (default 2000000 20000)
 *
 * Prints one line, `bare_write: FRAMES frames of BYTES bytes in SECONDS s: RATE frames/s`: the rate of the
 * writes after the warm-up, from the first one to the last one's return (what taskbench's throughput
 * counts for a publish: the write returned).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The reader's buffer: the size taskbench's sink reads with. */
#define READ_BUFFER (16 * 1024)
#define MAX_FRAME (64 * 1024)

static void fail(const char *what) {
    perror(what);
    exit(1);
}

/* Reads the socket to its end; returns the bytes read. */
static void *reader(void *arg) {
    int fd = *(int *)arg;
    static char buf[READ_BUFFER];
    unsigned long long *total = calloc(1, sizeof *total);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            *total += (unsigned long long)n;
        } else if (n == 0) {
            return total;
        } else if (errno != EINTR) {
            fail("read");
        }
    }
}

static void write_frame(int fd, const char *frame, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, frame + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("write");
        }
        done += (size_t)n;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FRAME_FILE [FRAMES] [WARMUP]\n", argv[0]);
        return 2;
    }
    unsigned long long frames = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
    unsigned long long warmup = argc > 3 ? strtoull(argv[3], NULL, 10) : 20000;
    static char frame[MAX_FRAME];
    FILE *f = fopen(argv[1], "rb");
    if (!f) fail(argv[1]);
    size_t len = fread(frame, 1, sizeof frame, f);
    fclose(f);
    if (len == 0) {
        fprintf(stderr, "%s: empty\n", argv[1]);
        return 1;
    }

    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) fail("socketpair");
    pthread_t thread;
    if (pthread_create(&thread, NULL, reader, &pair[1]) != 0) fail("pthread_create");

    for (unsigned long long i = 0; i < warmup; i++) write_frame(pair[0], frame, len);
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned long long i = 0; i < frames; i++) write_frame(pair[0], frame, len);
    clock_gettime(CLOCK_MONOTONIC, &end);
    close(pair[0]);

    void *read_total;
    pthread_join(thread, &read_total);
    unsigned long long read = *(unsigned long long *)read_total;
    unsigned long long written = (warmup + frames) * len;
    if (read != written) {
        fprintf(stderr, "the reader got %llu bytes of the %llu written\n", read, written);
        return 1;
    }
    double secs = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    printf("bare_write: %llu frames of %zu bytes in %.3f s: %.0f frames/s\n", frames, len, secs,
           (double)frames / secs);
    return 0;
}
