/* A steered MPI simulation. Every rank registers as an Academy agent
 * (class "examples_mpi.SimRank", name "rank-N") and serves two actions,
 * on a thread of its own, while its main thread runs the simulation:
 *
 *   step(n, rate=None)  run n more steps (after setting this rank's rate,
 *                       if given) and answer with state() once they are
 *                       done. Every step adds `rate` to the rank's value
 *                       and ends with an MPI_Allreduce of the values, so
 *                       ranks advance together: give every rank the same
 *                       number of steps.
 *   state()             {"rank", "size", "step", "value", "rate", "total"}
 *                       (total: the sum of all ranks' values at the last
 *                       step); answered at once, also mid-run.
 *
 * A Python academy user (examples-mpi/steer.py) discovers the ranks and
 * steers them; shutting an agent down ends its rank.
 *
 *   mpirun -n 4 steered_sim EXCHANGE_URL
 *       every rank joins the exchange at EXCHANGE_URL (started by the
 *       launcher, e.g. target/release/academy-exchange --config FILE.toml)
 *   mpirun -n 4 steered_sim --spawn URL_FILE
 *       rank 0 starts an exchange in its process (on 127.0.0.1: one node),
 *       broadcasts its URL to the other ranks and writes it to URL_FILE;
 *       after the ranks are shut down it keeps the exchange up until
 *       URL_FILE is removed (so that the users can finish), then stops it.
 */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "academy.h"

#define CHECK(call)                                                                                  \
    do {                                                                                             \
        academy_status s_ = (call);                                                                  \
        if (s_ != ACADEMY_OK) {                                                                      \
            fprintf(stderr, "rank %d: %s failed: %s: %s\n", sim.rank, #call, academy_status_str(s_), \
                    academy_last_error());                                                           \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                            \
        }                                                                                            \
    } while (0)

#define MAX_WAITING 64     /* step() calls waiting for their steps */
#define STEP_SECONDS 0.005 /* a step's "work" */

/* The rank's simulation, shared by its main thread and its handlers. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* more steps to run, or serving ended */
    int rank, size;
    long step;    /* steps done */
    long target;  /* steps asked for so far */
    double value; /* this rank's quantity */
    double rate;  /* added to value at every step */
    double total; /* sum of the values of all ranks at the last step */
    int stopped;  /* serving ended: no more steps will be asked */
    struct {
        academy_reply *reply;
        long step; /* answer once this step is done */
    } waiting[MAX_WAITING];
    int n_waiting;
} sim = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* state() as JSON; call with the lock held. */
static void state_json(char *out, size_t size) {
    snprintf(out, size, "{\"rank\": %d, \"size\": %d, \"step\": %ld, \"value\": %.17g, \"rate\": %.17g, \"total\": %.17g}",
             sim.rank, sim.size, sim.step, sim.value, sim.rate, sim.total);
}

/* Completes the step() calls whose steps are done; call with the lock held
 * (academy_reply_ok makes one round trip to the exchange). */
static void answer_done_steps(void) {
    char state[256];
    state_json(state, sizeof state);
    int kept = 0;
    for (int i = 0; i < sim.n_waiting; i++) {
        if (sim.waiting[i].step <= sim.step) {
            academy_reply_ok(sim.waiting[i].reply, state);
        } else {
            sim.waiting[kept++] = sim.waiting[i];
        }
    }
    sim.n_waiting = kept;
}

/* The action handler; runs on a library thread. step() only books the
 * steps and keeps the reply: the main thread completes it later. */
static void handle(void *user_data, const char *action, const char *args_json, const char *kwargs_json,
                   academy_reply *reply) {
    (void)user_data;
    char state[256];
    if (strcmp(action, "state") == 0) {
        pthread_mutex_lock(&sim.lock);
        state_json(state, sizeof state);
        pthread_mutex_unlock(&sim.lock);
        academy_reply_ok(reply, state);
    } else if (strcmp(action, "step") == 0) {
        /* args "[n]" or "[n, rate]", kwargs maybe {"rate": r}; a real
         * agent would use a JSON parser. */
        long n = -1;
        double rate = 0;
        int has_rate = sscanf(args_json, " [ %ld , %lf", &n, &rate) == 2;
        const char *r = strstr(kwargs_json, "\"rate\"");
        if (r != NULL && (r = strchr(r, ':')) != NULL) has_rate = sscanf(r + 1, " %lf", &rate) == 1;
        if (n < 0) {
            academy_reply_error(reply, "step takes a number of steps n >= 0");
            return;
        }
        pthread_mutex_lock(&sim.lock);
        if (sim.n_waiting == MAX_WAITING) {
            pthread_mutex_unlock(&sim.lock);
            academy_reply_error(reply, "too many step calls waiting");
            return;
        }
        if (has_rate) sim.rate = rate;
        sim.target += n;
        sim.waiting[sim.n_waiting].reply = reply;
        sim.waiting[sim.n_waiting].step = sim.target;
        sim.n_waiting++;
        answer_done_steps(); /* step(0): answered at once */
        pthread_cond_signal(&sim.wake);
        pthread_mutex_unlock(&sim.lock);
    } else {
        char message[128];
        snprintf(message, sizeof message, "SimRank has no action named \"%s\"", action);
        academy_reply_error(reply, message);
    }
}

static void *serve(void *agent) {
    academy_status status = academy_agent_serve(agent, handle, NULL);
    if (status != ACADEMY_OK) fprintf(stderr, "rank %d: serving ended: %s\n", sim.rank, academy_last_error());
    pthread_mutex_lock(&sim.lock);
    sim.stopped = 1;
    pthread_cond_signal(&sim.wake);
    pthread_mutex_unlock(&sim.lock);
    return NULL;
}

/* --spawn: rank 0 starts the exchange and writes its URL to url_file;
 * every rank gets the URL by MPI_Bcast. */
static char *spawned_exchange(const char *url_file, academy_exchange **exchange) {
    char *url = NULL;
    int length = 0;
    if (sim.rank == 0) {
        CHECK(academy_exchange_spawn("{\"host\": \"127.0.0.1\", \"port\": 0}", exchange));
        CHECK(academy_exchange_url(*exchange, &url));
        length = (int)strlen(url) + 1;
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", url_file);
        FILE *f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%s\n", url) < 0 || fclose(f) != 0 || rename(tmp, url_file) != 0) {
            perror(url_file);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
    char *copy = malloc(length);
    if (sim.rank == 0) memcpy(copy, url, length);
    MPI_Bcast(copy, length, MPI_CHAR, 0, MPI_COMM_WORLD);
    academy_string_free(url);
    return copy;
}

int main(int argc, char **argv) {
    int provided;
    /* Only the main thread calls MPI; library and serving threads never do. */
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &sim.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &sim.size);
    int spawn = argc == 3 && strcmp(argv[1], "--spawn") == 0;
    if (argc != 2 && !spawn) {
        if (sim.rank == 0) fprintf(stderr, "usage: %s EXCHANGE_URL | --spawn URL_FILE\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    academy_exchange *exchange = NULL;
    char *url = spawn ? spawned_exchange(argv[2], &exchange) : strdup(argv[1]);
    sim.rate = sim.rank + 1;

    academy_factory *factory;
    academy_client *registrar, *agent;
    char *registration, name[32];
    snprintf(name, sizeof name, "rank-%d", sim.rank);
    /* A step() call holds one of the max_concurrency handler slots until
     * its reply is completed; more slots let state() answer meanwhile. */
    CHECK(academy_http_factory_new(url, "{\"max_concurrency\": 8}", &factory));
    CHECK(academy_user_client_new(factory, name, &registrar));
    CHECK(academy_client_register_agent(registrar, "examples_mpi.SimRank", name, &registration));
    CHECK(academy_agent_client_new(factory, registration, &agent));
    pthread_t serving;
    pthread_create(&serving, NULL, serve, agent);

    /* The simulation: run the steps asked for, until serving ends. */
    pthread_mutex_lock(&sim.lock);
    for (;;) {
        while (sim.step == sim.target && !sim.stopped) pthread_cond_wait(&sim.wake, &sim.lock);
        if (sim.step == sim.target) break; /* stopped, nothing left to run */
        double value = sim.value + sim.rate, total;
        pthread_mutex_unlock(&sim.lock);
        nanosleep(&(struct timespec){0, (long)(STEP_SECONDS * 1e9)}, NULL);
        MPI_Allreduce(&value, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        pthread_mutex_lock(&sim.lock);
        sim.value = value;
        sim.total = total;
        sim.step++;
        answer_done_steps();
    }
    printf("rank %d: stopped after %ld steps, value %g, total %g\n", sim.rank, sim.step, sim.value, sim.total);
    fflush(stdout);
    pthread_mutex_unlock(&sim.lock);
    pthread_join(serving, NULL);

    academy_client_free(agent);
    academy_client_free(registrar);
    academy_string_free(registration);
    academy_factory_free(factory);
    MPI_Barrier(MPI_COMM_WORLD);
    if (exchange != NULL) {
        /* Keep the exchange up until the launcher removes the URL file. */
        for (int i = 0; i < 600 && access(argv[2], F_OK) == 0; i++) usleep(100000);
        academy_exchange_free(exchange);
    }
    free(url);
    MPI_Finalize();
    return 0;
}
