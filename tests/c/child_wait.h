/* For the C tests that fork: wait for a child with a bound, and kill it when it hangs (a hang is what they test). */
#ifndef XMEM_TEST_CHILD_WAIT_H
#define XMEM_TEST_CHILD_WAIT_H

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Waits up to `seconds` for `pid`: 0 when it exited, 1 when it hung (then it was SIGKILLed and reaped); *status is
   its wait status either way. */
static int wait_child_within(pid_t pid, int seconds, int *status)
{
    time_t deadline = time(NULL) + seconds;
    while (waitpid(pid, status, WNOHANG) == 0)
    {
        if (time(NULL) > deadline)
        {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return 1;
        }
        usleep(10000);
    }
    return 0;
}

#endif
