/* An agent written in C: registers "examples.Calculator" on the exchange,
 * prints its agent id, and serves until a user asks it to shut down.
 *
 *   calculator_agent EXCHANGE_URL                     the HTTP exchange
 *   calculator_agent redis  OPTIONS_JSON [REGISTRATION_JSON]
 *   calculator_agent hybrid OPTIONS_JSON [REGISTRATION_JSON]
 *
 * With "redis" or "hybrid" it joins academy-py's Redis or hybrid exchange
 * (OPTIONS_JSON as for academy_redis_factory_new or
 * academy_hybrid_factory_new, e.g. '{"redis_port": 6379}'). Given a
 * registration (one printed by academy-py or by an earlier run), it serves
 * that agent instead of registering a new one.
 */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EXCHANGE_URL | redis|hybrid OPTIONS_JSON [REGISTRATION_JSON]\n",
                argv[0]);
        return 2;
    }
    academy_factory *factory = NULL;
    const char *kind = argv[1];
    const char *given = NULL;
    if (strcmp(kind, "redis") == 0 || strcmp(kind, "hybrid") == 0) {
        if (argc < 3) {
            fprintf(stderr, "%s: %s needs its options JSON\n", argv[0], kind);
            return 2;
        }
        if (strcmp(kind, "redis") == 0) {
            CHECK(academy_redis_factory_new(argv[2], &factory));
        } else {
            CHECK(academy_hybrid_factory_new(argv[2], &factory));
        }
        given = argc > 3 ? argv[3] : NULL;
    } else {
        CHECK(academy_http_factory_new(kind, "{\"max_concurrency\": 4}", &factory));
    }
    academy_client *registrar = NULL;
    char *registration = NULL;
    if (given == NULL) {
        CHECK(academy_user_client_new(factory, "calculator-registrar", &registrar));
        CHECK(academy_client_register_agent(registrar, "examples.Calculator", "calculator",
                                            &registration));
        given = registration;
    }
    academy_client *agent = NULL;
    CHECK(academy_agent_client_new(factory, given, &agent));
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
