/* libacademy's log in the program's own logger.
 *
 *   log_callback
 *
 * The library logs nothing by default. academy_set_log_callback hands its
 * lines to a function of the program (here: one that prints them with a
 * prefix, as a program would pass them to syslog or its logging library).
 * The callback runs on whichever thread logs, library threads included, so
 * it only formats and writes; it never calls back into libacademy.
 *
 * What it shows: an embedded exchange and a client (the exchange's request
 * lines), a client that cannot reach its exchange (retries with their
 * back-off), an https exchange (the fast path turned off), then the level
 * raised to WARN and the callback removed. */
#include <pthread.h>

#include "common.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(academy_log_level level) {
    switch (level) {
    case ACADEMY_LOG_ERROR: return "ERROR";
    case ACADEMY_LOG_WARN: return "WARN";
    case ACADEMY_LOG_INFO: return "INFO";
    case ACADEMY_LOG_DEBUG: return "DEBUG";
    case ACADEMY_LOG_TRACE: return "TRACE";
    default: return "?";
    }
}

/* The program's logger: one line per call, never interleaved. */
static void to_my_log(void *user_data, academy_log_level level, const char *target,
                      const char *message) {
    int *lines = user_data;
    pthread_mutex_lock(&log_lock);
    (*lines)++;
    printf("log %s %s: %s\n", level_name(level), target, message);
    fflush(stdout);
    pthread_mutex_unlock(&log_lock);
}

/* A client of an exchange that cannot be reached (or spoken to): the
 * library retries, then gives up. */
static void fail_to_connect(const char *url) {
    academy_factory *factory = NULL;
    academy_client *client = NULL;
    CHECK(academy_http_factory_new(
        url, "{\"retries\": 2, \"initial_retry_backoff_s\": 0.01, \"connect_timeout_s\": 2}",
        &factory));
    academy_status s = academy_user_client_new(factory, NULL, &client);
    printf("client of %s: %s\n", url, academy_status_str(s));
    academy_client_free(client);
    academy_factory_free(factory);
}

int main(void) {
    int lines = 0;
    CHECK(academy_set_log_callback(to_my_log, &lines, ACADEMY_LOG_DEBUG));

    academy_exchange *exchange = NULL;
    academy_factory *factory = NULL;
    academy_client *user = NULL;
    char *url = NULL, *id = NULL, *message = NULL, *received = NULL;
    CHECK(academy_exchange_spawn(NULL, &exchange));
    CHECK(academy_exchange_url(exchange, &url));
    CHECK(academy_http_factory_new(url, NULL, &factory));
    CHECK(academy_user_client_new(factory, "logger-demo", &user));
    CHECK(academy_client_mailbox_id(user, &id));
    CHECK(academy_message_new(id, id, "{\"kind\": \"ping-request\"}", &message));
    CHECK(academy_client_send(user, message));
    CHECK(academy_client_recv(user, 5.0, &received));
    printf("sent a message to myself and received it\n");

    fail_to_connect("http://127.0.0.1:9");
    fail_to_connect("https://127.0.0.1:9");

    CHECK(academy_set_log_callback(to_my_log, &lines, ACADEMY_LOG_WARN));
    printf("-- level WARN --\n");
    fail_to_connect("http://127.0.0.1:9");

    CHECK(academy_set_log_callback(NULL, NULL, ACADEMY_LOG_OFF));
    printf("-- callback removed --\n");
    fail_to_connect("http://127.0.0.1:9");
    printf("%d lines logged\n", lines);

    academy_string_free(received);
    academy_string_free(message);
    academy_string_free(id);
    academy_string_free(url);
    CHECK(academy_client_close(user));
    academy_client_free(user);
    academy_factory_free(factory);
    CHECK(academy_exchange_stop(exchange));
    academy_exchange_free(exchange);
    return 0;
}
