/* The stand-in driver's shared registry (a contract checker, not a GPU: see standin.h).
 *
 * $XMEM_CUDA_STANDIN_DIR/registry is one struct standin_registry, mapped MAP_SHARED by every process that calls
 * cuInit. Every change is made under flock(LOCK_EX) on the file (the kernel drops it when the holder dies, so a
 * killed process never leaves it held) and a process-local mutex (an flock is per open file description, shared by
 * the threads of a process). Processes are named by pid and start time (/proc/<pid>/stat field 22), so a reused
 * pid is never taken for the process that died; a zombie counts as dead (its CUDA context is gone). */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define REGISTRY_MAGIC 0x4e49444e41545358ull /* "XSTANDIN" */

static struct standin_registry *g_reg;
static int g_fd = -1;
static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static char g_dir[512];
static uint64_t g_my_start;
static pid_t g_my_start_pid;

const char *standin_dir(void) { return g_dir; }
struct standin_registry *standin_reg(void) { return g_reg; }

uint64_t standin_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p || p[1] != ' ') {
        return 0;
    }
    p += 2;
    if (*p == 'Z' || *p == 'X') {
        return 0;
    }
    /* p is field 3 (state); start time is field 22 */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p) {
            p++;
        }
    }
    return p ? strtoull(p, NULL, 10) : 0;
}

uint64_t standin_my_start(void)
{
    pid_t me = getpid();
    if (g_my_start_pid != me) { /* first call, or a forked child */
        g_my_start = standin_start_time(me);
        g_my_start_pid = me;
    }
    return g_my_start;
}

int standin_alive(int32_t pid, uint64_t start)
{
    return pid > 0 && standin_start_time(pid) == start;
}

int standin_registry_open(void)
{
    if (g_reg) {
        return 0;
    }
    const char *dir = getenv("XMEM_CUDA_STANDIN_DIR");
    if (!dir || !*dir) {
        standin_violation("cuInit", "XMEM_CUDA_STANDIN_DIR is not set: the stand-in driver needs a directory for its shared registry");
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    char path[600];
    snprintf(path, sizeof path, "%s/registry", g_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        standin_violation("cuInit", "cannot open the registry %s: %s", path, strerror(errno));
        return -1;
    }
    flock(fd, LOCK_EX);
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size < (off_t)sizeof(struct standin_registry)) {
        if (ftruncate(fd, sizeof(struct standin_registry)) != 0) {
            flock(fd, LOCK_UN);
            close(fd);
            standin_violation("cuInit", "cannot size the registry: %s", strerror(errno));
            return -1;
        }
    }
    void *m = mmap(NULL, sizeof(struct standin_registry), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        flock(fd, LOCK_UN);
        close(fd);
        standin_violation("cuInit", "cannot map the registry: %s", strerror(errno));
        return -1;
    }
    struct standin_registry *r = m;
    if (r->magic != REGISTRY_MAGIC) {
        r->magic = REGISTRY_MAGIC;
        r->next_id = 1;
    }
    flock(fd, LOCK_UN);
    g_fd = fd;
    g_reg = r;
    return 0;
}

void standin_lock(void)
{
    pthread_mutex_lock(&g_mutex);
    while (flock(g_fd, LOCK_EX) != 0 && errno == EINTR) {
    }
}

void standin_unlock(void)
{
    flock(g_fd, LOCK_UN);
    pthread_mutex_unlock(&g_mutex);
}

static void mem_path(char *out, size_t n, uint64_t id) { snprintf(out, n, "%s/mem.%llu", g_dir, (unsigned long long)id); }

/* With the lock held: memory a freed record still counts (importers map it) is given back once no live importer
 * has it open; memory of a dead exporter goes with its context, once its live importers closed it too. */
void standin_sweep_locked(void)
{
    for (int i = 0; i < STANDIN_MAX_ALLOCS; i++) {
        struct standin_alloc *a = &g_reg->allocs[i];
        if (a->state != REC_LIVE && a->state != REC_FREED) {
            continue;
        }
        int owner_dead = !standin_alive(a->owner_pid, a->owner_start);
        if (a->state == REC_LIVE && !owner_dead) {
            continue;
        }
        int mapped = 0;
        for (int k = 0; k < STANDIN_MAX_IMPORTERS; k++) {
            struct standin_importer *im = &a->importers[k];
            if (im->count == 0) {
                continue;
            }
            if (!standin_alive(im->pid, im->start)) {
                memset(im, 0, sizeof *im); /* a dead importer's mappings went with it */
                continue;
            }
            mapped = 1;
        }
        if (!mapped) {
            char path[600];
            mem_path(path, sizeof path, a->id);
            unlink(path);
            if ((unsigned)a->device < STANDIN_MAX_DEVICES && g_reg->device_used[a->device] >= a->size) {
                g_reg->device_used[a->device] -= a->size;
            }
            a->state = REC_GONE;
        }
    }
    for (int i = 0; i < STANDIN_MAX_EVENTS; i++) {
        struct standin_event_rec *e = &g_reg->events[i];
        if (e->state == REC_LIVE && !standin_alive(e->owner_pid, e->owner_start)) {
            e->state = REC_GONE;
        }
    }
}
