/* Shared by the examples: stop with a clear message when a call fails. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "academy.h"

#define CHECK(call)                                                          \
    do {                                                                     \
        academy_status s_ = (call);                                          \
        if (s_ != ACADEMY_OK) {                                              \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, \
                    #call, academy_status_str(s_), academy_last_error());   \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* A tiny calculator: "add" sums its two positional numbers, "echo" returns
 * its first argument, anything else is an error the caller sees as an
 * exception. A real agent would parse args_json with a JSON library. */
static inline void calculator(void *user_data, const char *action, const char *args_json,
                       const char *kwargs_json, academy_reply *reply) {
    (void)user_data;
    (void)kwargs_json;
    if (strcmp(action, "add") == 0) {
        double a = 0, b = 0;
        if (sscanf(args_json, " [ %lf , %lf ]", &a, &b) != 2) {
            academy_reply_error(reply, "add takes two numbers");
            return;
        }
        char result[64];
        snprintf(result, sizeof result, "%.17g", a + b);
        academy_reply_ok(reply, result);
    } else if (strcmp(action, "echo") == 0) {
        /* args_json is "[x]": return x by trimming the brackets. */
        size_t n = strlen(args_json);
        char *x = malloc(n + 1);
        if (x == NULL || n < 2) {
            free(x);
            academy_reply_error(reply, "echo takes one argument");
            return;
        }
        memcpy(x, args_json + 1, n - 2);
        x[n - 2] = '\0';
        if (academy_reply_ok(reply, x) != ACADEMY_OK) {
            fprintf(stderr, "echo: %s\n", academy_last_error());
        }
        free(x);
    } else {
        char message[256];
        snprintf(message, sizeof message, "the calculator has no action named \"%s\"", action);
        academy_reply_error(reply, message);
    }
}

#endif
