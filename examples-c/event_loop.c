/* One thread, one epoll loop: it serves an agent and keeps 1,000 actions to
 * it in flight, with no thread per call and no callback on a library thread.
 *
 *   event_loop [EXCHANGE_URL [ACTIONS]]
 *
 * Without a URL (or with "") it starts the embedded exchange in this
 * process. Everything goes through one completion queue: the queue's fd
 * sits in the epoll set beside whatever else the program waits for; when it
 * is readable, the loop takes the events: CALL (an action it started
 * ended) and REQUEST (an action request for the agent it serves, answered
 * with the same calculator handler that demo.c serves from threads). */
#include <errno.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define IN_FLIGHT 1000
#define SERVING 0 /* the serving's token; calls use 1, 2, ... */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Waits until the queue's fd is readable (or something else the program
 * watches: here there is nothing else). */
static void wait_readable(int epoll) {
    struct epoll_event ready;
    for (;;) {
        int n = epoll_wait(epoll, &ready, 1, 30000);
        if (n == 1) return;
        if (n < 0 && errno == EINTR) continue;
        fprintf(stderr, "no event for 30 s\n");
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : getenv("ACADEMY_EXCHANGE_URL");
    uint64_t total = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000;
    academy_exchange *exchange = NULL;
    char *embedded_url = NULL;
    if (url == NULL || url[0] == '\0') {
        CHECK(academy_exchange_spawn(NULL, &exchange));
        CHECK(academy_exchange_url(exchange, &embedded_url));
        url = embedded_url;
    }

    academy_factory *factory = NULL;
    academy_client *user = NULL, *agent = NULL;
    char *registration = NULL, *agent_id = NULL;
    CHECK(academy_http_factory_new(url, NULL, &factory));
    CHECK(academy_user_client_new(factory, "event-loop", &user));
    CHECK(academy_client_register_agent(user, "examples.Calculator", NULL, &registration));
    CHECK(academy_agent_client_new(factory, registration, &agent));
    CHECK(academy_client_mailbox_id(agent, &agent_id));

    /* One queue for everything, its fd in the loop's epoll set. */
    academy_queue *queue = NULL;
    int fd = -1;
    CHECK(academy_queue_new(&queue));
    CHECK(academy_queue_fd(queue, &fd));
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event watch = {.events = EPOLLIN};
    if (epoll < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &watch) != 0) {
        perror("epoll");
        return 1;
    }
    CHECK(academy_agent_serve_queue(agent, queue, SERVING));

    uint64_t started = 0, finished = 0, correct = 0, served = 0;
    int ended = 0;
    academy_status serving_status = ACADEMY_ERR_INTERNAL;
    double t0 = now_s();
    while (finished < total || !ended) {
        /* Keep IN_FLIGHT actions started: each returns at once. */
        while (started < total && started - finished < IN_FLIGHT) {
            char args[64];
            started++;
            snprintf(args, sizeof args, "[%" PRIu64 ", 1]", started);
            CHECK(academy_client_action_async(user, agent_id, "add", args, NULL, 30.0, queue, started));
        }
        if (finished == total && started == total) {
            /* All done: ask the agent to shut down; its serving then ends
             * with an ACADEMY_EVENT_ENDED event. */
            CHECK(academy_client_shutdown_agent(user, agent_id, 1));
            started++; /* only once */
        }
        wait_readable(epoll);
        academy_event *event = NULL;
        while (academy_queue_poll(queue, 0, &event) == ACADEMY_OK) {
            switch (event->kind) {
            case ACADEMY_EVENT_REQUEST: /* the agent's part */
                calculator(NULL, event->action, event->args_json, event->kwargs_json, event->reply);
                served++;
                break;
            case ACADEMY_EVENT_CALL: /* the user's part */
                if (event->status == ACADEMY_OK) {
                    if (strtod(event->json, NULL) == (double)(event->token + 1)) correct++;
                } else {
                    fprintf(stderr, "action %" PRIu64 ": %s: %s\n", event->token,
                            academy_status_str(event->status), event->error);
                }
                finished++;
                break;
            case ACADEMY_EVENT_ENDED:
                serving_status = event->status;
                ended = 1;
                break;
            default: /* kinds this program does not use */
                break;
            }
            academy_event_free(event);
        }
    }
    double seconds = now_s() - t0;

    printf("%" PRIu64 " actions with %d in flight from one thread: %" PRIu64 " correct, %" PRIu64
           " requests served from the same loop\n",
           total, IN_FLIGHT, correct, served);
    printf("serving ended: %s\n", academy_status_str(serving_status));
    fprintf(stderr, "%.2f s, %.0f actions/s\n", seconds, (double)total / seconds);

    close(epoll);
    academy_queue_free(queue);
    CHECK(academy_client_close(agent));
    CHECK(academy_client_close(user));
    academy_client_free(agent);
    academy_client_free(user);
    academy_factory_free(factory);
    academy_string_free(agent_id);
    academy_string_free(registration);
    if (exchange != NULL) {
        CHECK(academy_exchange_stop(exchange));
        academy_exchange_free(exchange);
        academy_string_free(embedded_url);
    }
    return correct == total && served == total && serving_status == ACADEMY_OK ? 0 : 1;
}
