/* The pod sandbox's placeholder process, tagged registry.k8s.io/pause:<PAUSE_IMAGE_VERSION> by
 * tools/node/build-images.sh (built with gcc -static; no registry is reachable here).
 *
 * It sleeps until SIGINT or SIGTERM and exits 0. As PID 1 of a pod that shares its process
 * namespace it inherits orphans, so it reaps every child that exits. `pause -v` prints the version.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "unknown"
#endif

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction sa;

    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("pause.c %s (forensic-checkpoint)\n", VERSION);
        return 0;
    }
    if (getpid() != 1)
        fprintf(stderr, "Warning: pause should be the first process\n");

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return 1;
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &sa, NULL) < 0)
        return 2;

    for (;;)
        pause();
}
