/* A user that finds the calculator agent on the exchange and calls it.
 *
 *   call_agent EXCHANGE_URL
 */
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EXCHANGE_URL\n", argv[0]);
        return 2;
    }
    academy_factory *factory = NULL;
    CHECK(academy_http_factory_new(argv[1], NULL, &factory));
    academy_client *user = NULL;
    CHECK(academy_user_client_new(factory, "caller", &user));

    /* Wait (up to 10 s) for the agent to register. */
    char *ids = NULL;
    for (int i = 0; i < 100; i++) {
        CHECK(academy_client_discover(user, "examples.Calculator", false, &ids));
        if (strcmp(ids, "[]") != 0) break;
        academy_string_free(ids);
        ids = NULL;
        usleep(100 * 1000);
    }
    if (ids == NULL) {
        fprintf(stderr, "no examples.Calculator agent found\n");
        return 1;
    }
    /* ids is a JSON array of agent ids; take the first: [{...}, ...]. */
    char agent_id[256];
    const char *end = strchr(ids, '}');
    snprintf(agent_id, sizeof agent_id, "%.*s", (int)(end - ids), ids + 1);
    academy_string_free(ids);

    char *result = NULL;
    CHECK(academy_client_action(user, agent_id, "add", "[40, 2]", NULL, 10.0, &result));
    printf("add(40, 2) = %s\n", result);
    academy_string_free(result);
    CHECK(academy_client_action(user, agent_id, "echo", "[{\"nested\": [1, 2, \"three\"]}]", NULL, 10.0, &result));
    printf("echo = %s\n", result);
    academy_string_free(result);
    double rtt = 0;
    CHECK(academy_client_ping(user, agent_id, 10.0, &rtt));
    printf("ping ok\n");
    CHECK(academy_client_shutdown_agent(user, agent_id, -1));

    CHECK(academy_client_close(user));
    academy_client_free(user);
    academy_factory_free(factory);
    return 0;
}
