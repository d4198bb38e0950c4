/*
 * fmtop - print the fmagent entity table from shared memory and follow its
 * events. An example of fmshm.h.
 *
 *   fmtop [-1] [path]     path defaults to /dev/shm/fmagent; -1: print once
 */
#define _GNU_SOURCE
#include "../fmshm.h"

#include <stdio.h>
#include <string.h>

static const char *kind_name(unsigned k)
{
	static const char *n[] = {"?", "node", "link", "process", "service", "custom"};
	return k < sizeof n / sizeof n[0] ? n[k] : "?";
}

static const char *state_name(unsigned s) { return s == FMSHM_STATE_UP ? "up" : s == FMSHM_STATE_DOWN ? "DOWN" : "?"; }

static const char *sev_name(unsigned s)
{
	static const char *n[] = {"?", "indeterminate", "warning", "minor", "major", "critical"};
	return s < sizeof n / sizeof n[0] ? n[s] : "?";
}

static const char *event_name(unsigned k)
{
	static const char *n[] = {"?", "put", "delete", "state", "raised", "cleared"};
	return k < sizeof n / sizeof n[0] ? n[k] : "?";
}

static int print_entity(const fmshm_entity *e, void *ctx)
{
	unsigned j;
	(void)ctx;
	printf("%-40s %-8s %-5s owner=%-3u inc=%-6llu seq=%-8llu", e->name, kind_name(e->kind), state_name(e->state),
	       e->owner, (unsigned long long)e->incarnation, (unsigned long long)e->changed_seq);
	/* How long the master's change took to reach this node's table (layout
	 * minor 1; the two clocks' offset included). */
	if (e->written_at != 0 && e->changed_at != 0)
		printf(" lag=%.3fms", (double)(e->written_at - e->changed_at) / 1e6);
	for (j = 0; j < e->nalarms; j++)
		printf(" [%s %s by %u]", e->alarms[j].cause, sev_name(e->alarms[j].severity), e->alarms[j].raised_by);
	printf("\n");
	return 0;
}

static int print_table(fmshm *r)
{
	fmshm_info h;
	int rc = fmshm_header(r, &h);
	printf("segment %s: v%u.%u %s, generation %llu, node %u, master %u, epoch %llu%s, seq %llu, %llu/%u entities\n",
	       r->path, h.major, h.minor, h.status == FMSHM_STATUS_READY ? "ready" : "NOT READY",
	       (unsigned long long)h.generation, h.node_id, h.master, (unsigned long long)h.epoch,
	       h.stale ? " STALE" : "", (unsigned long long)h.seq, (unsigned long long)h.count, h.capacity);
	printf("writer pid %u %s, heartbeat %.1f ms ago\n", h.writer_pid, h.writer_alive ? "alive" : "DEAD",
	       (double)h.heartbeat_age / 1e6);
	if (rc != FMSHM_OK)
		return rc;
	return fmshm_foreach(r, print_entity, NULL);
}

int main(int argc, char **argv)
{
	const char *path = FMSHM_DEFAULT_PATH;
	int once = 0, i, rc;
	fmshm r;
	fmshm_follower f;
	uint64_t seq;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-1") == 0)
			once = 1;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "usage: fmtop [-1] [path]\n");
			return 2;
		} else
			path = argv[i];
	}
	if ((rc = fmshm_open(&r, path)) != FMSHM_OK) {
		fprintf(stderr, "fmtop: %s: %s%s%s\n", path, fmshm_strerror(rc), rc == FMSHM_ESYS ? ": " : "",
		        rc == FMSHM_ESYS ? strerror(errno) : "");
		return 1;
	}
	rc = print_table(&r);
	if (rc != FMSHM_OK)
		fprintf(stderr, "fmtop: %s\n", fmshm_strerror(rc));
	if (once) {
		fmshm_close(&r);
		return rc == FMSHM_OK ? 0 : 1;
	}
	fmshm_follow(&r, &f, 0);
	seq = fmshm_seq(&r);
	for (;;) {
		fmshm_event ev;
		uint64_t lost;
		rc = fmshm_wait(&r, seq, 1000, &seq);
		if (rc == FMSHM_ERECREATED || rc == FMSHM_ECLOSED || rc == FMSHM_EWRITERDEAD) {
			fprintf(stderr, "fmtop: %s; reopening\n", fmshm_strerror(rc));
			fmshm_close(&r);
			while (fmshm_open(&r, path) != FMSHM_OK || fmshm_check(&r) != FMSHM_OK) {
				fmshm_close(&r);
				sleep(1);
			}
			print_table(&r);
			fmshm_follow(&r, &f, 0);
			seq = fmshm_seq(&r);
			continue;
		}
		for (;;) {
			fmshm_entity e;
			int got = fmshm_next_event(&r, &f, &ev, &lost);
			if (lost)
				printf("... %llu events lost (fell behind)\n", (unsigned long long)lost);
			if (!got)
				break;
			if (fmshm_read(&r, ev.entity_id, &e) != FMSHM_OK)
				snprintf(e.name, sizeof e.name, "%016llx", (unsigned long long)ev.entity_id);
			printf("seq %-8llu %-7s %-40s %s", (unsigned long long)ev.table_seq, event_name(ev.kind), e.name,
			       state_name(ev.state));
			if (ev.kind == FMSHM_EV_RAISED || ev.kind == FMSHM_EV_CLEARED)
				printf(" %s", sev_name(ev.severity));
			printf("\n");
		}
		fflush(stdout);
	}
}
