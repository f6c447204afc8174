/* The floor this machine sets for a round trip, to read the ping figures
 * against: the cost of waking another thread (a pipe ping-pong between two
 * threads) and a loopback TCP round trip between two processes. Prints one
 * JSON object. Built and run by bench/run. */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ROUNDS = 20000 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_us(double *v) {
    qsort(v, ROUNDS, sizeof *v, by_value);
    return v[ROUNDS / 2] * 1e6;
}

static int to_thread[2], from_thread[2];

static void *echo_thread(void *unused) {
    char c;
    (void)unused;
    while (read(to_thread[0], &c, 1) == 1 && write(from_thread[1], &c, 1) == 1) {
    }
    return NULL;
}

/* One byte there and back, ROUNDS times: the median in microseconds. */
static double ping_pong(int out, int in, double *v) {
    char c = 'x';
    for (int i = 0; i < ROUNDS; i++) {
        double t = now();
        if (write(out, &c, 1) != 1 || read(in, &c, 1) != 1) {
            return -1;
        }
        v[i] = now() - t;
    }
    return median_us(v);
}

static void nodelay(int s) {
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int main(void) {
    double *v = malloc(ROUNDS * sizeof *v);
    pthread_t thread;
    if (!v || pipe(to_thread) || pipe(from_thread) ||
        pthread_create(&thread, NULL, echo_thread, NULL)) {
        return 1;
    }
    double thread_rtt = ping_pong(to_thread[1], from_thread[0], v);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) ||
        getsockname(listener, (struct sockaddr *)&addr, &len) || listen(listener, 1)) {
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        char c;
        if (connect(s, (struct sockaddr *)&addr, sizeof addr)) {
            _exit(1);
        }
        nodelay(s);
        while (read(s, &c, 1) == 1 && write(s, &c, 1) == 1) {
        }
        _exit(0);
    }
    int s = accept(listener, NULL, NULL);
    nodelay(s);
    double tcp_rtt = ping_pong(s, s, v);
    close(s);
    waitpid(child, NULL, 0);
    printf("{\"thread_wake_rtt_us\": %.1f, \"tcp_process_rtt_us\": %.1f}\n", thread_rtt, tcp_rtt);
    return 0;
}
