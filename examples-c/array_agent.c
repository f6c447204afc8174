/* An agent written in C that numpy users call with academy-py's defaults
 * (a plain Handle pickles its arguments: libacademy reads the pickle and
 * hands this agent the JSON form of each value).
 *
 *   array_agent EXCHANGE_URL
 *
 * Registers "examples.ArrayAgent", prints its agent id, and serves until a
 * user asks it to shut down:
 *   scale(array, factor)  the array times factor: same dtype (float32 or
 *                         float64), shape and memory order
 *   cumsum(array)         the running sum of a 1-d array of int32, int64,
 *                         float32 or float64, as float64 (numpy.cumsum)
 *
 * The arrays arrive and leave as typed buffers: academy_ndarray_read() gives
 * the elements as a C array in this machine's byte order, and
 * academy_ndarray_write() makes the result's JSON form, which reaches the
 * Python caller as a numpy.ndarray.
 */
#include <math.h>

#include "common.h"

/* The double at JSON pointer `pointer` of `json`, or NAN. */
static double number_at(const char *json, const char *pointer) {
    char *text = NULL;
    if (academy_json_get(json, pointer, &text) != ACADEMY_OK) {
        return NAN;
    }
    char *end = NULL;
    double value = strtod(text, &end);
    if (end == text || *end != '\0') {
        value = NAN;
    }
    academy_string_free(text);
    return value;
}

/* Answers with an error naming what was wrong; the Python caller raises
 * AcademyRemoteError with this text. */
static void refuse(academy_reply *reply, const char *what, const academy_ndarray *array) {
    char message[256];
    snprintf(message, sizeof message, "%s, not an array of dtype %s with %zu dimension(s)", what,
             array->dtype, array->ndim);
    academy_reply_error(reply, message);
}

static void reply_array(academy_reply *reply, const char *dtype, const academy_ndarray *like,
                        const void *data) {
    char *json = NULL;
    CHECK(academy_ndarray_write(dtype, like->ndim, like->shape, like->order, data, &json));
    if (academy_reply_ok(reply, json) != ACADEMY_OK) {
        fprintf(stderr, "array_agent: %s\n", academy_last_error());
    }
    academy_string_free(json);
}

static void scale(const academy_ndarray *a, double factor, academy_reply *reply) {
    size_t n = a->nbytes / a->itemsize;
    if (a->kind != 'f' || (a->itemsize != 4 && a->itemsize != 8)) {
        refuse(reply, "scale takes an array of float32 or float64", a);
        return;
    }
    void *out = malloc(a->nbytes ? a->nbytes : 1);
    for (size_t i = 0; i < n; i++) {
        if (a->itemsize == 8) {
            ((double *)out)[i] = ((const double *)a->data)[i] * factor;
        } else {
            ((float *)out)[i] = (float)(((const float *)a->data)[i] * factor);
        }
    }
    /* The same layout as the input, so the same shape and order. */
    reply_array(reply, a->dtype, a, out);
    free(out);
}

static void cumsum(const academy_ndarray *a, academy_reply *reply) {
    if (a->ndim != 1 || !(a->kind == 'i' || a->kind == 'f') ||
        (a->itemsize != 4 && a->itemsize != 8)) {
        refuse(reply, "cumsum takes a 1-d array of int32, int64, float32 or float64", a);
        return;
    }
    size_t n = a->shape[0];
    double *out = malloc(n ? n * sizeof(double) : 1);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (a->kind == 'f') {
            sum += a->itemsize == 8 ? ((const double *)a->data)[i] : ((const float *)a->data)[i];
        } else {
            sum += a->itemsize == 8 ? (double)((const int64_t *)a->data)[i]
                                    : ((const int32_t *)a->data)[i];
        }
        out[i] = sum;
    }
    reply_array(reply, "<f8", a, out);
    free(out);
}

static void handler(void *user_data, const char *action, const char *args_json,
                    const char *kwargs_json, academy_reply *reply) {
    (void)user_data;
    (void)kwargs_json;
    academy_ndarray *array = NULL;
    if (academy_ndarray_read(args_json, "/0", &array) != ACADEMY_OK) {
        /* The text says why: not an array, or a dtype with no typed buffer
         * (copied: academy_last_error()'s text lasts until the next call). */
        char why[512];
        snprintf(why, sizeof why, "%s", academy_last_error());
        academy_reply_error(reply, why);
        return;
    }
    if (strcmp(action, "scale") == 0) {
        scale(array, number_at(args_json, "/1"), reply);
    } else if (strcmp(action, "cumsum") == 0) {
        cumsum(array, reply);
    } else {
        char message[128];
        snprintf(message, sizeof message, "the array agent has no action named \"%s\"", action);
        academy_reply_error(reply, message);
    }
    academy_ndarray_free(array);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s EXCHANGE_URL\n", argv[0]);
        return 2;
    }
    academy_factory *factory = NULL;
    CHECK(academy_http_factory_new(argv[1], "{\"max_concurrency\": 2}", &factory));
    academy_client *registrar = NULL;
    char *registration = NULL;
    CHECK(academy_user_client_new(factory, "array-registrar", &registrar));
    CHECK(academy_client_register_agent(registrar, "examples.ArrayAgent", "arrays", &registration));
    academy_client *agent = NULL;
    CHECK(academy_agent_client_new(factory, registration, &agent));
    char *id = NULL;
    CHECK(academy_client_mailbox_id(agent, &id));
    printf("%s\n", id);
    fflush(stdout);

    CHECK(academy_agent_serve(agent, handler, NULL));
    fprintf(stderr, "array_agent: shut down\n");

    academy_string_free(id);
    academy_string_free(registration);
    academy_client_free(agent);
    academy_client_free(registrar);
    academy_factory_free(factory);
    return 0;
}
