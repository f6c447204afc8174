/* An agent written in C: registers "examples.Calculator" on the exchange,
 * prints its agent id, and serves until a user asks it to shut down.
 *
 *   calculator_agent EXCHANGE_URL
 */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EXCHANGE_URL\n", argv[0]);
        return 2;
    }
    academy_factory *factory = NULL;
    CHECK(academy_http_factory_new(argv[1], "{\"max_concurrency\": 4}", &factory));
    academy_client *registrar = NULL;
    CHECK(academy_user_client_new(factory, "calculator-registrar", &registrar));
    char *registration = NULL;
    CHECK(academy_client_register_agent(registrar, "examples.Calculator", "calculator", &registration));
    academy_client *agent = NULL;
    CHECK(academy_agent_client_new(factory, registration, &agent));
    char *id = NULL;
    CHECK(academy_client_mailbox_id(agent, &id));
    printf("%s\n", id);
    fflush(stdout);

    CHECK(academy_agent_serve(agent, calculator, NULL));
    fprintf(stderr, "calculator: shut down\n");

    academy_string_free(id);
    academy_string_free(registration);
    academy_client_free(agent);
    academy_client_free(registrar);
    academy_factory_free(factory);
    return 0;
}
