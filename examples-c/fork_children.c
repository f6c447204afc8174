/* HPC launchers fork: a parent that already uses libacademy forks 8
 * children; each child makes its own factory and client (the parent's
 * handles answer ACADEMY_ERR_CLOSED there), registers an agent and serves
 * it; the parent, still working, calls every child's agent and shuts it
 * down.
 *
 *   fork_children [EXCHANGE_URL]     (default: the embedded exchange)
 */
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define CHILDREN 8

static void whoami(void *user_data, const char *action, const char *args_json,
                   const char *kwargs_json, academy_reply *reply) {
    (void)user_data;
    (void)action;
    (void)args_json;
    (void)kwargs_json;
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    academy_reply_ok(reply, pid);
}

static int child(const char *url, academy_client *parents_client, int out) {
    /* The parent's handles must refuse to work here. */
    char *text = NULL;
    academy_status s = academy_client_recv(parents_client, 0, &text);
    if (s != ACADEMY_ERR_CLOSED || strstr(academy_last_error(), "fork") == NULL) {
        fprintf(stderr, "child %ld: parent's client answered %s\n", (long)getpid(), academy_status_str(s));
        return 1;
    }
    academy_factory *factory = NULL;
    CHECK(academy_http_factory_new(url, NULL, &factory));
    academy_client *registrar = NULL;
    CHECK(academy_user_client_new(factory, "child", &registrar));
    char *registration = NULL;
    CHECK(academy_client_register_agent(registrar, "fork.Child", NULL, &registration));
    academy_client *agent = NULL;
    CHECK(academy_agent_client_new(factory, registration, &agent));
    char *id = NULL;
    CHECK(academy_client_mailbox_id(agent, &id));
    dprintf(out, "%s\n", id);
    close(out);
    CHECK(academy_agent_serve(agent, whoami, NULL));
    academy_string_free(id);
    academy_string_free(registration);
    academy_client_free(agent);
    academy_client_free(registrar);
    academy_factory_free(factory);
    return 0;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : NULL;
    academy_exchange *exchange = NULL;
    char *embedded_url = NULL;
    if (url == NULL) {
        CHECK(academy_exchange_spawn(NULL, &exchange));
        CHECK(academy_exchange_url(exchange, &embedded_url));
        url = embedded_url;
    }
    academy_factory *factory = NULL;
    CHECK(academy_http_factory_new(url, NULL, &factory));
    academy_client *user = NULL;
    CHECK(academy_user_client_new(factory, "parent", &user));

    pid_t pids[CHILDREN];
    char ids[CHILDREN][256];
    for (int i = 0; i < CHILDREN; i++) {
        int fds[2];
        if (pipe(fds) != 0) return 1;
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] < 0) return 1;
        if (pids[i] == 0) {
            close(fds[0]);
            _exit(child(url, user, fds[1]));
        }
        close(fds[1]);
        /* The parent goes on working while the children start. */
        double age = 0;
        char *me = NULL;
        CHECK(academy_client_mailbox_id(user, &me));
        CHECK(academy_client_heartbeat_status(user, me, &age));
        academy_string_free(me);
        FILE *in = fdopen(fds[0], "r");
        if (in == NULL || fgets(ids[i], sizeof ids[i], in) == NULL) {
            fprintf(stderr, "child %d sent no agent id\n", i);
            return 1;
        }
        fclose(in);
        ids[i][strcspn(ids[i], "\n")] = '\0';
    }

    int ok = 0;
    for (int i = 0; i < CHILDREN; i++) {
        char *result = NULL;
        CHECK(academy_client_action(user, ids[i], "whoami", NULL, NULL, 30.0, &result));
        if (atol(result) == (long)pids[i]) ok++;
        academy_string_free(result);
        CHECK(academy_client_shutdown_agent(user, ids[i], 1));
    }
    int exited = 0;
    for (int i = 0; i < CHILDREN; i++) {
        int status = 0;
        if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0) exited++;
    }
    printf("%d children answered from their own pid, %d exited cleanly\n", ok, exited);

    CHECK(academy_client_close(user));
    academy_client_free(user);
    academy_factory_free(factory);
    if (exchange != NULL) {
        CHECK(academy_exchange_stop(exchange));
        academy_exchange_free(exchange);
        academy_string_free(embedded_url);
    }
    return ok == CHILDREN && exited == CHILDREN ? 0 : 1;
}
