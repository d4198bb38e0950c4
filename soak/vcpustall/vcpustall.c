/*
 * vcpustall: the machine's own scheduling stalls, as a control for the
 * soak (soak -stall-probe). One thread per CPU, pinned to it, at
 * SCHED_FIFO 50 (above the agents' loops, below the kernel's interrupt
 * threads), sleeps to an absolute deadline every millisecond and records
 * how late it woke. Nothing in user space at a lower priority can delay
 * it, so a late wake-up here is the kernel's or the hypervisor's (a vCPU
 * the host did not run): a delay no agent design can avoid.
 *
 * Usage: vcpustall SECONDS
 * Prints, per CPU: "cpu N: worst W ms, episodes E" where an episode is a
 * run of wake-ups more than 20 ms late; and one line per episode. SIGTERM
 * ends it early, summary printed (the soak measures a phase of unknown
 * length so: the listers' registrations).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long secs;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static long ns(struct timespec t) { return t.tv_sec * 1000000000L + t.tv_nsec; }

static void *probe(void *arg)
{
	int cpu = (int)(long)arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
		fprintf(stderr, "cpu %d: affinity refused\n", cpu);
	struct sched_param p = {.sched_priority = 50};
	if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) != 0)
		fprintf(stderr, "cpu %d: SCHED_FIFO refused: figures include normal scheduling\n", cpu);
	struct timespec t0, now, next;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	next = t0;
	long worst = 0;
	int episodes = 0, in = 0;
	for (;;) {
		next.tv_nsec += 1000000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		long late = ns(now) - ns(next);
		if (late > worst)
			worst = late;
		if (late > 20000000) {
			if (!in) {
				episodes++;
				printf("cpu %d: at +%.3f s, %.1f ms late\n", cpu, (ns(now) - ns(t0)) / 1e9, late / 1e6);
			}
			in = 1;
			next = now; /* one episode, not one line per missed millisecond */
		} else {
			in = 0;
		}
		if (ns(now) - ns(t0) >= secs * 1000000000L || stop)
			break;
	}
	printf("cpu %d: worst %.3f ms, episodes %d\n", cpu, worst / 1e6, episodes);
	fflush(stdout);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2 || (secs = atol(argv[1])) <= 0) {
		fprintf(stderr, "usage: vcpustall SECONDS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa = {.sa_handler = on_term};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t *th = calloc(n, sizeof *th);
	for (long i = 0; i < n; i++)
		pthread_create(&th[i], NULL, probe, (void *)i);
	for (long i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	return 0;
}
