/*
 * hbloop: the C idle floor of the end-to-end benchmark (idlefloor.go).
 *
 * One process does, every interval, what an idle fmagent's real-time loop
 * does at each tick, in C and with nothing else: the same sockets on the
 * same two networks (per network a group socket, a heartbeat socket and a
 * unicast socket, IP_PKTINFO, IP_RECVTOS and, on the heartbeat socket,
 * SO_TIMESTAMPNS on), the same wait (ppoll on the six sockets, a timerfd
 * armed at an absolute CLOCK_MONOTONIC deadline and stdin), the same reads
 * (recvmmsg of the heartbeat sockets until a batch is not full), the drop
 * counters (SO_MEMINFO of the six sockets) every DROPS_EVERY_NS (as an idle
 * agent, no peer near its judgement) and one heartbeat sent to each
 * network's heartbeat group, from one thread at SCHED_FIFO with its memory
 * locked. It has no protocol: it is what a tick costs on this machine
 * without one, and without Go's scheduler.
 *
 * usage: hbloop GROUP_A GROUP_B PORT INTERVAL_NS PRIORITY
 * It prints "ready" once its sockets are open and, when stdin closes,
 * "packets RECEIVED SENT" (heartbeats, over its life) and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif
/* The agent's dropsEvery (agent/rtloop.go). */
#define DROPS_EVERY_NS 100000000LL
#define BATCH 16
#define HBSIZE 128

static long long ns_of(const struct timespec *t)
{
	return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static int sock(const char *group, int port, int shared, int stamp)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (s < 0)
		return -1;
	setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
	setsockopt(s, IPPROTO_IP, IP_RECVTOS, &one, sizeof one);
	if (stamp)
		setsockopt(s, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (shared) {
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
		inet_pton(AF_INET, group, &a.sin_addr);
	} else {
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	}
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("hbloop: bind");
		return -1;
	}
	if (shared) {
		struct ip_mreqn m = {.imr_ifindex = 0};
		inet_pton(AF_INET, group, &m.imr_multiaddr);
		inet_pton(AF_INET, "127.0.0.1", &m.imr_address);
		if (setsockopt(s, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) < 0) {
			perror("hbloop: IP_ADD_MEMBERSHIP");
			return -1;
		}
	} else {
		struct in_addr lo;
		inet_pton(AF_INET, "127.0.0.1", &lo);
		setsockopt(s, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo);
	}
	return s;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: hbloop GROUP_A GROUP_B PORT INTERVAL_NS PRIORITY\n");
		return 2;
	}
	const char *group[2] = {argv[1], argv[2]};
	int port = atoi(argv[3]);
	long long interval = atoll(argv[4]);
	struct sched_param sp = {.sched_priority = atoi(argv[5])};
	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
		perror("hbloop: SCHED_FIFO (continuing at the normal policy)");
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0)
		perror("hbloop: mlockall (continuing)");

	int grp[2], hb[2], uni[2], all[6];
	unsigned short self[2]; /* our unicast ports, which our heartbeats come from */
	struct sockaddr_in to[2];
	for (int n = 0; n < 2; n++) {
		grp[n] = sock(group[n], port, 1, 0);
		hb[n] = sock(group[n], port + 1, 1, 1);
		uni[n] = sock(group[n], 0, 0, 0);
		if (grp[n] < 0 || hb[n] < 0 || uni[n] < 0)
			return 1;
		all[3 * n] = grp[n], all[3 * n + 1] = hb[n], all[3 * n + 2] = uni[n];
		struct sockaddr_in me;
		socklen_t ml = sizeof me;
		getsockname(uni[n], (struct sockaddr *)&me, &ml);
		self[n] = me.sin_port;
		to[n] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port + 1)};
		inet_pton(AF_INET, group[n], &to[n].sin_addr);
	}
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (tfd < 0) {
		perror("hbloop: timerfd_create");
		return 1;
	}
	/* The agent's wait set: group and unicast sockets, the timer, and
	 * (for the agent an eventfd) here stdin, whose end stops the loop. */
	struct pollfd pfd[6] = {
	    {grp[0], POLLIN, 0}, {uni[0], POLLIN, 0}, {grp[1], POLLIN, 0},
	    {uni[1], POLLIN, 0}, {tfd, POLLIN, 0},    {0, POLLIN, 0},
	};
	static char bufs[BATCH][1500], oob[BATCH][96], pkt[HBSIZE];
	struct sockaddr_in from[BATCH];
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	unsigned long long received = 0, sent = 0;
	struct timespec next;
	long long drops_at = -DROPS_EVERY_NS;
	clock_gettime(CLOCK_MONOTONIC, &next);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		struct itimerspec its = {.it_value = next};
		timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
		if (ppoll(pfd, 6, NULL, NULL) < 0 && errno != EINTR)
			return 1;
		if (pfd[5].revents) { /* stdin closed */
			printf("packets %llu %llu\n", received, sent);
			return 0;
		}
		for (int i = 0; i < 4; i++) /* nothing arrives there when idle */
			if (pfd[i].revents)
				while (recv(pfd[i].fd, bufs[0], sizeof bufs[0], MSG_DONTWAIT) > 0)
					;
		if (!pfd[4].revents)
			continue;
		char b8[8];
		if (read(tfd, b8, 8) < 0 && errno != EAGAIN)
			return 1;
		for (int n = 0; n < 2; n++) {
			for (;;) {
				for (int i = 0; i < BATCH; i++) {
					iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
					memset(&mm[i], 0, sizeof mm[i]);
					mm[i].msg_hdr.msg_iov = &iov[i];
					mm[i].msg_hdr.msg_iovlen = 1;
					mm[i].msg_hdr.msg_name = &from[i];
					mm[i].msg_hdr.msg_namelen = sizeof from[i];
					mm[i].msg_hdr.msg_control = oob[i];
					mm[i].msg_hdr.msg_controllen = sizeof oob[i];
				}
				int k = recvmmsg(hb[n], mm, BATCH, MSG_DONTWAIT, NULL);
				for (int i = 0; i < k; i++) /* the agent drops its own */
					if (from[i].sin_port != self[n])
						received++;
				if (k < BATCH)
					break;
			}
		}
		if (ns_of(&next) - drops_at >= DROPS_EVERY_NS) {
			unsigned long long drops = 0;
			drops_at = ns_of(&next);
			for (int i = 0; i < 6; i++) {
				unsigned int mem[9];
				socklen_t l = sizeof mem;
				if (getsockopt(all[i], SOL_SOCKET, SO_MEMINFO, mem, &l) == 0)
					drops += mem[8]; /* SK_MEMINFO_DROPS */
			}
			pkt[0] = (char)drops;
		}
		for (int n = 0; n < 2; n++)
			if (sendto(uni[n], pkt, sizeof pkt, 0, (struct sockaddr *)&to[n], sizeof to[n]) > 0)
				sent++;
		next.tv_nsec += interval;
		while (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
	}
}
