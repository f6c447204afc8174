/* The header's version macros match the library it is linked with. */
#include <stdio.h>
#include <string.h>

#include <academy.h>

int main(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", ACADEMY_VERSION_MAJOR, ACADEMY_VERSION_MINOR,
             ACADEMY_VERSION_PATCH);
    printf("header %s, library %s\n", expected, academy_version());
    return strcmp(expected, academy_version()) == 0 ? 0 : 1;
}
