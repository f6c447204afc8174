/* The main job: a user calls an agent over an Academy exchange.
 *
 *   demo [EXCHANGE_URL]
 *
 * Without a URL (or ACADEMY_EXCHANGE_URL) it starts the embedded exchange
 * in this process, so no Python is needed. The agent is served from a
 * thread of this program; the user calls it through the exchange exactly
 * as it would call an agent in another process or written in Python. */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

/* Called once per academy_client_send_async, on a library thread. */
static void sent(void *counter, academy_status status, const char *error) {
    if (status != ACADEMY_OK)
        fprintf(stderr, "a send failed: %s\n", error);
    atomic_fetch_add((atomic_int *)counter, 1);
}

/* One-way messages kept in flight from this one thread, then received. */
static void send_many(academy_factory *factory, academy_client *user, int n) {
    char *registration = NULL, *id = NULL, *user_id = NULL;
    academy_client *inbox = NULL;
    CHECK(academy_client_register_agent(user, "examples.Inbox", NULL, &registration));
    CHECK(academy_agent_client_new(factory, registration, &inbox));
    CHECK(academy_client_mailbox_id(inbox, &id));
    CHECK(academy_client_mailbox_id(user, &user_id));
    atomic_int callbacks = 0;
    for (int i = 0; i < n; i++) {
        char *message = NULL;
        CHECK(academy_message_new(user_id, id, "{\"kind\": \"ping-request\"}", &message));
        CHECK(academy_client_send_async(user, message, sent, &callbacks));
        academy_string_free(message); /* copied by the library */
    }
    CHECK(academy_client_flush(user, -1)); /* every send done, every callback run */
    int received = 0;
    char *message = NULL;
    while (received < n && academy_client_recv(inbox, 5.0, &message) == ACADEMY_OK) {
        academy_string_free(message);
        received++;
    }
    printf("sent %d messages with academy_client_send_async (%d callbacks), received %d\n", n,
           atomic_load(&callbacks), received);
    CHECK(academy_client_close(inbox));
    academy_client_free(inbox);
    academy_string_free(user_id);
    academy_string_free(id);
    academy_string_free(registration);
}

struct agent {
    academy_factory *factory;
    char *registration;
    academy_status served;
};

static void *serve(void *arg) {
    struct agent *agent = arg;
    academy_client *client = NULL;
    CHECK(academy_agent_client_new(agent->factory, agent->registration, &client));
    agent->served = academy_agent_serve(client, calculator, NULL);
    academy_client_free(client);
    return NULL;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : getenv("ACADEMY_EXCHANGE_URL");
    academy_exchange *exchange = NULL;
    char *embedded_url = NULL;
    if (url == NULL || url[0] == '\0') {
        CHECK(academy_exchange_spawn(NULL, &exchange));
        CHECK(academy_exchange_url(exchange, &embedded_url));
        url = embedded_url;
        printf("started the embedded exchange at %s\n", url);
    }
    printf("libacademy %s, exchange %s\n", academy_version(), url);

    academy_factory *factory = NULL;
    CHECK(academy_http_factory_new(url, NULL, &factory));
    academy_client *user = NULL;
    CHECK(academy_user_client_new(factory, "demo-user", &user));

    struct agent agent = {factory, NULL, ACADEMY_OK};
    CHECK(academy_client_register_agent(user, "examples.Calculator", "calculator", &agent.registration));
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, &agent) != 0) {
        fprintf(stderr, "cannot start the agent thread\n");
        return 1;
    }

    char *ids = NULL;
    CHECK(academy_client_discover(user, "examples.Calculator", false, &ids));
    printf("discovered: %s\n", ids);
    academy_string_free(ids);

    /* The agent id is inside the registration: {"agent_id": {...}, ...}. */
    const char *start = strstr(agent.registration, "{\"uid\"");
    const char *end = start ? strchr(start, '}') : NULL;
    if (end == NULL) {
        fprintf(stderr, "unexpected registration %s\n", agent.registration);
        return 1;
    }
    char agent_id[256];
    snprintf(agent_id, sizeof agent_id, "%.*s", (int)(end - start + 1), start);

    char *result = NULL;
    CHECK(academy_client_action(user, agent_id, "add", "[2, 3]", NULL, 10.0, &result));
    printf("add(2, 3) = %s\n", result);
    academy_string_free(result);

    double rtt = 0;
    CHECK(academy_client_ping(user, agent_id, 10.0, &rtt));
    printf("ping: %.3f ms\n", rtt * 1e3);

    academy_status s = academy_client_action(user, agent_id, "divide", "[1, 0]", NULL, 10.0, &result);
    printf("divide(1, 0) -> %s: %s\n", academy_status_str(s), academy_last_error());

    send_many(factory, user, 100);

    CHECK(academy_client_shutdown_agent(user, agent_id, -1));
    pthread_join(thread, NULL);
    CHECK(agent.served);
    printf("the agent shut down\n");

    academy_string_free(agent.registration);
    CHECK(academy_client_close(user));
    academy_client_free(user);
    academy_factory_free(factory);
    if (exchange != NULL) {
        CHECK(academy_exchange_stop(exchange));
        academy_exchange_free(exchange);
        academy_string_free(embedded_url);
    }
    return 0;
}
