/* The violation log of the stand-in driver (a contract checker, not a GPU: see standin.h). One line per broken rule,
 * appended with O_APPEND in a single write so lines of concurrent processes never interleave. */
#include "standin.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void standin_violation(const char *fn, const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "xmem-cuda-standin: pid %d: %s: VIOLATION: ", (int)getpid(), fn);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) {
        n = (int)sizeof line - 2;
    }
    line[n++] = '\n';
    const char *path = getenv("XMEM_CUDA_STANDIN_LOG");
    int fd = path && *path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : 2;
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        if (fd != 2) {
            close(fd);
        }
    }
}
