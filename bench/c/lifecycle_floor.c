/* The kernel's share of xmem's pool Create, Open and Dispose on this machine: the same system calls, on the same
 * files, in the same order (taken from `strace -f Xmem.Benchmarks hot-loop lifecycle` at capacity 16, whose control
 * segment is 32 KiB), with none of xmem's own work in between. Whatever xmem's `hot-loop lifecycle` measures above
 * these figures is the library; these figures are what a library with xmem's crash safety pays at least (O_TMPFILE +
 * linkat to publish only a whole segment, fallocate to fail on a full /dev/shm at create rather than SIGBUS later,
 * OFD locks for liveness, the directory scan that finds a dead instance's segments at removal).
 *   gcc -O2 -o /tmp/lifecycle_floor bench/c/lifecycle_floor.c && /tmp/lifecycle_floor [rounds]
 * Prints the median of each sequence over the rounds (default 2000, after 100 warm-up rounds), in microseconds. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG 32768 /* the control segment at capacity 16 */
#define LIVE0 4096 /* the first liveness byte (process entry 0) */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int ofd(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static void touch(char *p, int pages) {
    for (int i = 0; i < pages; i++) ((volatile char *)p)[(size_t)i * 4096] = 1;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    if (rounds < 1) rounds = 1;
    char name[96], path[128], kept[128], holdings[160], fdpath[64];
    snprintf(name, sizeof name, "xmem-lifecycle-floor-%d", (int)getpid());
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    snprintf(kept, sizeof kept, "/dev/shm/%s-kept", name);
    /* The pool Open opens: made once, its entry 0 locked by another open file description (as the creator's is). */
    int keeper = open(kept, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (keeper < 0 || fallocate(keeper, 0, 0, SEG) != 0) die("keeper");
    if (ofd(keeper, F_OFD_SETLK, F_WRLCK, LIVE0, 1) != 0) die("keeper lock");
    uint64_t *t[4];
    for (int k = 0; k < 4; k++) t[k] = malloc(sizeof(uint64_t) * (size_t)rounds);
    struct statx sx;
    for (int r = -100; r < rounds; r++) {
        /* Create: an unnamed segment, its creator's liveness lock, reserved, mapped, written (3-4 pages fault), its
         * identity, published under the name; the check of entry 0's holdings name. */
        uint64_t t0 = now_ns();
        int fd = open("/dev/shm", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
        if (fd < 0) die("O_TMPFILE");
        fchmod(fd, 0600);
        ofd(fd, F_OFD_SETLK, F_WRLCK, LIVE0, 1);
        if (fallocate(fd, 0, 0, SEG) != 0) die("fallocate");
        char *p = mmap(NULL, SEG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) die("mmap");
        touch(p, 4);
        (void)getpid();
        statx(fd, "", AT_EMPTY_PATH, STATX_MODE | STATX_UID | STATX_GID | STATX_INO | STATX_SIZE, &sx);
        snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, fdpath, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0) die("linkat");
        snprintf(holdings, sizeof holdings, "%s.0123456789abcdef.p0", path);
        statx(AT_FDCWD, holdings, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID, &sx);
        (void)geteuid();
        uint64_t t1 = now_ns();
        /* Dispose of the last process: its lock given back, "anyone else alive?", the removal lock, the name's
         * identity, the scan of the directory for the instance's segments, the unlink, unmap and close. */
        ofd(fd, F_OFD_SETLK, F_UNLCK, LIVE0, 1);
        ofd(fd, F_OFD_GETLK, F_WRLCK, LIVE0, 16384);
        ofd(fd, F_OFD_SETLK, F_WRLCK, 0, 1);
        statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_INO, &sx);
        ofd(fd, F_OFD_GETLK, F_WRLCK, LIVE0, 16384);
        DIR *d = opendir("/dev/shm");
        if (d) {
            while (readdir(d)) {
            }
            closedir(d);
        }
        unlink(path);
        ofd(fd, F_OFD_SETLK, F_UNLCK, 0, 1);
        munmap(p, SEG);
        close(fd);
        uint64_t t2 = now_ns();
        /* Open: the name, its identity and size, the mapping (header and process table fault), entry 0 refused
         * (its owner lives), entry 1 taken, the check of its holdings name. */
        fd = open(kept, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) die("open");
        statx(fd, "", AT_EMPTY_PATH, STATX_MODE | STATX_UID | STATX_GID | STATX_INO | STATX_SIZE, &sx);
        p = mmap(NULL, SEG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) die("mmap");
        touch(p, 2);
        ofd(fd, F_OFD_SETLK, F_WRLCK, LIVE0, 1); /* EAGAIN: the keeper's */
        ofd(fd, F_OFD_SETLK, F_WRLCK, LIVE0 + 64, 1);
        snprintf(holdings, sizeof holdings, "%s.0123456789abcdef.p1", kept);
        statx(AT_FDCWD, holdings, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID, &sx);
        (void)geteuid();
        uint64_t t3 = now_ns();
        /* Dispose of a process that is not the last: its lock, "anyone else alive?", unmap, close. */
        ofd(fd, F_OFD_SETLK, F_UNLCK, LIVE0 + 64, 1);
        ofd(fd, F_OFD_GETLK, F_WRLCK, LIVE0, 1);
        munmap(p, SEG);
        close(fd);
        uint64_t t4 = now_ns();
        if (r >= 0) {
            t[0][r] = t1 - t0;
            t[1][r] = t2 - t1;
            t[2][r] = t3 - t2;
            t[3][r] = t4 - t3;
        }
    }
    close(keeper);
    unlink(kept);
    const char *what[4] = {"Create", "Dispose (last process, removes)", "Open", "Dispose (detach)"};
    printf("kernel floor of xmem's lifecycle at capacity 16 (median of %d):", rounds);
    for (int k = 0; k < 4; k++) {
        qsort(t[k], (size_t)rounds, sizeof(uint64_t), cmp);
        printf("%s %s %.1f us", k ? "," : "", what[k], (double)t[k][rounds / 2] / 1000.0);
    }
    printf("\n");
    return 0;
}
