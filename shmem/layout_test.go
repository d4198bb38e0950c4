package shmem_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fmagent/fmagent/ring"
	"github.com/fmagent/fmagent/shmem"
	L "github.com/fmagent/fmagent/shmem/internal/layout"
	"github.com/fmagent/fmagent/wire"
)

type layoutItem struct {
	key  string // the C expression printed
	want uint64 // the Go value
}

func off(st, f string, want uint64) layoutItem {
	return layoutItem{fmt.Sprintf("offsetof(struct %s, %s)", st, f), want}
}

func size(expr string, want uint64) layoutItem { return layoutItem{"sizeof(" + expr + ")", want} }

func cval(expr string, want uint64) layoutItem { return layoutItem{expr, want} }

// layoutItems pairs every offset, size and constant of fmshm.h with the Go
// side's.
func layoutItems() []layoutItem {
	h := "fmshm_header"
	s := "fmshm_slot"
	a := "fmshm_alarm_rec"
	return []layoutItem{
		cval("FMSHM_MAGIC", L.Magic), cval("FMSHM_MAJOR", L.Major), cval("FMSHM_MINOR", L.Minor),
		cval("FMSHM_MAX_ALARMS", shmem.MaxAlarms), cval("FMSHM_MAX_NAME", wire.MaxName), cval("FMSHM_MAX_CAUSE", wire.MaxCause),
		cval("FMSHM_HEADER_SIZE", L.HeaderSize), cval("FMSHM_HEADER_REGION", L.HeaderRegion), cval("FMSHM_PAGE", L.PageSize),
		cval("FMSHM_BUCKET_SIZE", L.BucketSize), cval("FMSHM_SLOT_SIZE", L.SlotSize), cval("FMSHM_ALARM_SIZE", L.AlarmSize),
		cval("FMSHM_RING_HEADER_SIZE", ring.BroadcastHeaderSize), cval("FMSHM_RING_SLOT_SIZE", L.RingSlotSize),
		cval("FMSHM_EVENT_RECORD", L.EventRecord),
		cval("FMSHM_STATUS_INIT", uint64(shmem.StatusInit)), cval("FMSHM_STATUS_READY", uint64(shmem.StatusReady)),
		cval("FMSHM_STATUS_CLOSED", uint64(shmem.StatusClosed)), cval("FMSHM_STATUS_REPLACED", uint64(shmem.StatusReplaced)),
		cval("FMSHM_KIND_NODE", uint64(wire.KindNode)), cval("FMSHM_KIND_LINK", uint64(wire.KindLink)),
		cval("FMSHM_KIND_PROCESS", uint64(wire.KindProcess)), cval("FMSHM_KIND_SERVICE", uint64(wire.KindService)),
		cval("FMSHM_KIND_CUSTOM", uint64(wire.KindCustom)),
		cval("FMSHM_STATE_UP", uint64(wire.StateUp)), cval("FMSHM_STATE_DOWN", uint64(wire.StateDown)),
		cval("FMSHM_SEV_INDETERMINATE", uint64(wire.SevIndeterminate)), cval("FMSHM_SEV_WARNING", uint64(wire.SevWarning)),
		cval("FMSHM_SEV_MINOR", uint64(wire.SevMinor)), cval("FMSHM_SEV_MAJOR", uint64(wire.SevMajor)),
		cval("FMSHM_SEV_CRITICAL", uint64(wire.SevCritical)),
		cval("FMSHM_EV_PUT", uint64(shmem.EventPut)), cval("FMSHM_EV_DELETE", uint64(shmem.EventDelete)),
		cval("FMSHM_EV_STATE", uint64(shmem.EventStateChanged)), cval("FMSHM_EV_RAISED", uint64(shmem.EventAlarmRaised)),
		cval("FMSHM_EV_CLEARED", uint64(shmem.EventAlarmCleared)),
		cval("FMSHM_META_KIND_SHIFT", L.MetaKindShift), cval("FMSHM_META_STATE_SHIFT", L.MetaStateShift),
		cval("FMSHM_META_NAMELEN_SHIFT", L.MetaNameLenShift), cval("FMSHM_META_NALARMS_SHIFT", L.MetaNAlarmsShift),
		cval("FMSHM_OWNER_SHIFT", L.OwnerShift), cval("FMSHM_CHANGEDBY_SHIFT", L.ChangedByShift),
		cval("FMSHM_ALARM_BY_SHIFT", L.AlarmByShift), cval("FMSHM_ALARM_SEV_SHIFT", L.AlarmSevShift),
		cval("FMSHM_ALARM_CAUSELEN_SHIFT", L.AlarmCauseLnShift),
		cval("FMSHM_EV_KIND_SHIFT", L.EventKindShift), cval("FMSHM_EV_STATE_SHIFT", L.EventStShift),
		cval("FMSHM_EV_SEV_SHIFT", L.EventSevShift),

		size("struct "+h, L.HeaderSize),
		off(h, "magic", L.HdrMagic), off(h, "version", L.HdrVersion), off(h, "header_size", L.HdrHeaderSize),
		off(h, "total_size", L.HdrTotalSize), off(h, "index_off", L.HdrIndexOff), off(h, "index_size", L.HdrIndexSize),
		off(h, "slots_off", L.HdrSlotsOff), off(h, "slots_size", L.HdrSlotsSize), off(h, "ring_off", L.HdrRingOff),
		off(h, "ring_size", L.HdrRingSize), off(h, "capacity", L.HdrCapacity), off(h, "slot_size", L.HdrSlotSize),
		off(h, "max_alarms", L.HdrMaxAlarms), off(h, "index_buckets", L.HdrIndexBuckets),
		off(h, "ring_capacity", L.HdrRingCapacity), off(h, "ring_slot_size", L.HdrRingSlotSize),
		off(h, "generation", L.HdrGeneration), off(h, "writer_pid", L.HdrWriterPID), off(h, "node_id", L.HdrNodeID),
		off(h, "writer_start", L.HdrWriterStart), off(h, "writer_start_ticks", L.HdrWriterStartTk),
		off(h, "ready", L.HdrReady), off(h, "reserved2", L.HdrReserved2), off(h, "index_seq", L.HdrIndexSeq),
		off(h, "hb_timeout", L.HdrHBTimeout), off(h, "index_seed", L.HdrIndexSeed), off(h, "table_seq", L.HdrTableSeq), off(h, "epoch", L.HdrEpoch),
		off(h, "master", L.HdrMaster), off(h, "stale", L.HdrStale), off(h, "count", L.HdrCount),
		off(h, "slots_used", L.HdrSlotsUsed), off(h, "heartbeat", L.HdrHeartbeat),
		size("((struct fmshm_header *)0)->ready", 4), size("((struct fmshm_header *)0)->writer_pid", 4),
		size("((struct fmshm_header *)0)->table_seq", 8),

		size("struct fmshm_bucket", L.BucketSize),
		off("fmshm_bucket", "id", L.BucketID), off("fmshm_bucket", "ref", L.BucketRef),

		size("struct "+s, L.SlotSize),
		off(s, "seq", L.SlotSeq), off(s, "id", L.SlotID), off(s, "incarnation", L.SlotIncarn),
		off(s, "changed_at", L.SlotChangedAt), off(s, "changed_seq", L.SlotChangedSeq),
		off(s, "owner_by", L.SlotOwnerBy), off(s, "meta", L.SlotMeta), off(s, "written_at", L.SlotWrittenAt),
		off(s, "name", L.SlotName), size("((struct fmshm_slot *)0)->name", L.SlotNameBytes),
		off(s, "alarms", L.SlotAlarms), off(s, "pad", L.SlotPad),
		size("((struct fmshm_slot *)0)->alarms", L.MaxAlarms*L.AlarmSize),

		size("struct "+a, L.AlarmSize),
		off(a, "raised_at", L.AlarmRaisedAt), off(a, "by_meta", L.AlarmByMeta), off(a, "cause", L.AlarmCause),
		size("((struct fmshm_alarm_rec *)0)->cause", L.AlarmCauseBytes),

		size("struct fmshm_ring_header", ring.BroadcastHeaderSize),
		off("fmshm_ring_header", "capacity", L.RingCapOff), off("fmshm_ring_header", "sizes", L.RingRecOff),
		off("fmshm_ring_header", "tail", L.RingTailOff),
		size("struct fmshm_event_rec", L.RingSlotSize),
		off("fmshm_event_rec", "seq", L.RingSlotSeq), off("fmshm_event_rec", "table_seq", L.EventTableSeq),
		off("fmshm_event_rec", "entity_id", L.EventEntityID), off("fmshm_event_rec", "meta", L.EventMeta),
	}
}

const layoutProg = `#define _GNU_SOURCE
#include "fmshm.h"
#include <stdio.h>

int main(int argc, char **argv)
{
	int i;
%s
	/* each segment named on the command line: open it and read "node/1" */
	for (i = 1; i < argc; i++) {
		fmshm r;
		fmshm_entity e;
		int rc = fmshm_open(&r, argv[i]);
		if (rc != FMSHM_OK) {
			printf("segment %%d open %%d\n", i, rc);
			continue;
		}
		rc = fmshm_read_by_name(&r, "node/1", &e);
		printf("segment %%d %%d cap=%%u buckets=%%u ring=%%u state=%%u kind=%%u owner=%%u inc=%%llu alarms=%%u cause=%%s sev=%%u\n",
		       i, rc, r.capacity, r.mask + 1, r.ring_mask + 1, e.state, e.kind, e.owner,
		       (unsigned long long)e.incarnation, e.nalarms, e.nalarms ? e.alarms[0].cause : "-",
		       e.nalarms ? e.alarms[0].severity : 0);
		fmshm_close(&r);
	}
	return 0;
}
`

// compileC compiles src (which includes fmshm.h) with gcc in the strict
// flags of the C side, and returns the binary. gcc is required: without it
// the test fails, it does not skip.
func compileC(t *testing.T, src string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("gcc not found on PATH: the layout test compiles shmem/fmshm.h with gcc and compares its offsets with Go's; install gcc (%v)", err)
	}
	dir := t.TempDir()
	c := filepath.Join(dir, "layout.c")
	check(t, os.WriteFile(c, []byte(src), 0o644))
	here, err := os.Getwd()
	check(t, err)
	bin := filepath.Join(dir, "layout")
	out, err := exec.Command(gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1",
		"-I", here, "-o", bin, c).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc failed on fmshm.h: %v\n%s", err, out)
	}
	return bin
}

// TestLayoutMatchesC compiles fmshm.h, prints every offset, size and
// constant from C, and compares each with the Go layout.
func TestLayoutMatchesC(t *testing.T) {
	items := layoutItems()
	var body strings.Builder
	for i, it := range items {
		fmt.Fprintf(&body, "\tprintf(\"%d %%llu\\n\", (unsigned long long)(%s));\n", i, it.key)
	}
	bin := compileC(t, fmt.Sprintf(layoutProg, body.String()))
	out, err := exec.Command(bin).Output()
	check(t, err)
	got := map[int]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		i, err1 := strconv.Atoi(f[0])
		v, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		got[i] = v
	}
	for i, it := range items {
		v, ok := got[i]
		if !ok {
			t.Errorf("%s: not printed by C", it.key)
		} else if v != it.want {
			t.Errorf("%s: C says %d, Go says %d", it.key, v, it.want)
		}
	}
	t.Logf("%d offsets, sizes and constants agree", len(items))
}

// TestCReadsGoSegments has the C reader open segments of several
// geometries written by Go and read an entity from each.
func TestCReadsGoSegments(t *testing.T) {
	bin := compileC(t, fmt.Sprintf(layoutProg, ""))
	geos := []shmem.Options{{Capacity: 1, EventRingSize: 1}, {Capacity: 7, EventRingSize: 8},
		{Capacity: 1000, EventRingSize: 100}, {Capacity: 4096}, {Capacity: 20000, EventRingSize: 65536}}
	var args []string
	for i, o := range geos {
		p := shmPath(t) + strconv.Itoa(i)
		t.Cleanup(func() { os.Remove(p) })
		w, err := shmem.Create(p, o)
		check(t, err)
		defer w.Close()
		e := shmem.Entity{Kind: wire.KindNode, State: wire.StateDown, Owner: 9, Incarnation: 77}
		check(t, e.SetName("node/1"))
		check(t, e.RaiseAlarm("both-links-lost", wire.SevCritical, 5, 2))
		check(t, w.Put(&e))
		args = append(args, p)
	}
	out, err := exec.Command(bin, args...).Output()
	check(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(geos) {
		t.Fatalf("C printed:\n%s", out)
	}
	for i, o := range geos {
		ring := o.EventRingSize
		if ring == 0 {
			ring = 4096
		}
		g := L.Compute(o.Capacity, L.NextPow2(ring))
		want := fmt.Sprintf("segment %d 0 cap=%d buckets=%d ring=%d state=2 kind=1 owner=9 inc=77 alarms=1 cause=both-links-lost sev=5",
			i+1, o.Capacity, g.Buckets, g.RingCapacity)
		if lines[i] != want {
			t.Errorf("C read\n%s\nwant\n%s", lines[i], want)
		}
	}
}
