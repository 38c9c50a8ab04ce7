/*
 * A C program built only against the Xmem.Native package (its include/xmem.h, its
 * runtimes/linux-x64/native/libxmem.so), by scripts/test-packages.sh:
 *
 *   gcc -std=c11 -Wall -Wextra -Werror -I PKG/include roundtrip.c -L PKG/runtimes/linux-x64/native -lxmem \
 *       -Wl,-rpath,PKG/runtimes/linux-x64/native -o roundtrip && ./roundtrip POOL
 *
 * Creates POOL, writes a buffer and hands its meta index to a child process (fork, then exec of this program) that
 * opens the pool by name and checks every byte: another process, the same memory. Then closes the pool, which
 * removes it. Exits 0 only when all that worked.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xmem.h"

#define SIZE 65536

#define OK(call)                                                                                        \
    do {                                                                                                \
        xmem_status s_ = (call);                                                                        \
        if (s_ != XMEM_OK) {                                                                            \
            fprintf(stderr, "package-c: %s failed: [%d %s] %s\n", #call, s_, xmem_status_name(s_),      \
                    xmem_last_error());                                                                 \
            exit(1);                                                                                    \
        }                                                                                               \
    } while (0)

static unsigned char pattern(int i) { return (unsigned char)(i * 7 + 3); }

/* The child, a fresh process image (exec): it attaches on its own, as any unrelated process would. */
static int consume(const char *name, int32_t index)
{
    xmem_pool pool;
    xmem_guard guard;
    xmem_buffer_info info;
    OK(xmem_pool_open(name, &pool));
    OK(xmem_pool_get(pool, index, &guard, &info));
    if (info.size < SIZE) {
        fprintf(stderr, "package-c: the child sees %lld bytes, not %d\n", (long long)info.size, SIZE);
        return 1;
    }
    const unsigned char *p = info.cpu_ptr;
    for (int i = 0; i < SIZE; i++) {
        if (p[i] != pattern(i)) {
            fprintf(stderr, "package-c: byte %d is %d, not %d\n", i, p[i], pattern(i));
            return 1;
        }
    }
    int32_t count;
    OK(xmem_guard_release(guard));
    OK(xmem_pool_release(pool, index, &count)); /* the reference the parent handed over */
    OK(xmem_pool_close(pool));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "consume") == 0)
        return consume(argv[2], atoi(argv[3]));
    if (argc != 2) {
        fprintf(stderr, "usage: %s POOL\n", argv[0]);
        return 64;
    }

    const char *name = argv[1];
    xmem_pool pool;
    xmem_guard guard;
    xmem_buffer_info info;
    int32_t count;
    OK(xmem_pool_create(name, 8, 0600, 0, &pool));
    OK(xmem_pool_acquire_cpu(pool, SIZE, &guard, &info));
    unsigned char *p = info.cpu_ptr;
    for (int i = 0; i < SIZE; i++)
        p[i] = pattern(i);
    OK(xmem_pool_add_ref(pool, info.meta_index, &count)); /* the reference in flight for the child */
    OK(xmem_guard_release(guard));

    char index[16];
    snprintf(index, sizeof index, "%d", info.meta_index);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("package-c: fork");
        return 1;
    }
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "consume", name, index, (char *)NULL);
        perror("package-c: exec");
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "package-c: the child failed (status %d)\n", status);
        return 1;
    }
    OK(xmem_pool_ref_count(pool, info.meta_index, &count));
    if (count != 0) {
        fprintf(stderr, "package-c: the slot's count is %d after the child released it, not 0\n", count);
        return 1;
    }
    OK(xmem_pool_close(pool));
    int32_t exists = 1;
    OK(xmem_pool_exists(name, &exists));
    if (exists) {
        fprintf(stderr, "package-c: pool %s still exists after its last close\n", name);
        return 1;
    }
    printf("package-c: %d bytes written here, read in another process through pool %s; pool gone after close\n",
           SIZE, name);
    return 0;
}
