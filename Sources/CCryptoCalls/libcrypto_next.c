#define _GNU_SOURCE
#include "libcrypto_next.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *tunnel_libcrypto_next(const char *name) {
    void *f = dlvsym(RTLD_NEXT, name, "OPENSSL_3.0.0");
    if (f == NULL) f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        fprintf(stderr, "tunnel: libcrypto has no %s: %s\n", name, dlerror());
        abort();
    }
    return f;
}

int tunnel_setting_enabled(const char *name) {
    const char *setting = getenv(name);
    return !(setting != NULL && strcmp(setting, "0") == 0);
}
