package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/api/apitest"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/internal/testutil/agenttest"
	"github.com/fmagent/fmagent/wire"
)

// ---- harness ----

// handler is the fake handler, with the status replaceable (the fake's own
// is a one-node cluster).
type handler struct {
	*apitest.Handler
	mu     sync.Mutex
	status *api.Status
	hook   func(ctx context.Context, method string) error
}

// setHook sets the fake's Hook, safely while requests run.
func (h *handler) setHook(f func(ctx context.Context, method string) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hook = f
}

func (h *handler) runHook(ctx context.Context, method string) error {
	h.mu.Lock()
	f := h.hook
	h.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(ctx, method)
}

func (h *handler) setStatus(st *api.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status = st
}

func (h *handler) Status(ctx context.Context) (*api.Status, error) {
	h.mu.Lock()
	st := h.status
	h.mu.Unlock()
	if st == nil {
		return h.Handler.Status(ctx)
	}
	c := *st
	c.Members = append([]api.Member(nil), st.Members...)
	return &c, nil
}

type agent struct {
	t    *testing.T
	stop func() // the agent goes away
	h    *handler
	path string
	c    *client.Client // for setting up and checking the table
}

// startAgent runs a real api.Server with the fake handler on a unix socket
// in a temporary directory.
func startAgent(t *testing.T) *agent {
	t.Helper()
	h := &handler{Handler: apitest.NewHandler()}
	h.Handler.Hook = h.runHook
	path, stop := agenttest.ServeAPI(t, h)
	a := &agent{t: t, stop: stop, h: h, path: path}
	var err error
	a.c, err = client.Dial(ctxT(t), path)
	require.NoError(t, err)
	t.Cleanup(func() { a.c.Close() })
	return a
}

func ctxT(t *testing.T) context.Context { return testutil.Context(t, 20*time.Second) }

// result is one run of fmctl.
type result struct {
	code           int
	stdout, stderr string
}

// fmctl runs fmctl with args against no particular agent.
func fmctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctxT(t), args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// run runs fmctl against a with args (after the global -socket).
func (a *agent) run(args ...string) result {
	a.t.Helper()
	return fmctl(a.t, append([]string{"-socket", a.path}, args...)...)
}

// ok runs fmctl and requires exit status 0 and nothing on stderr.
func (a *agent) ok(args ...string) string {
	a.t.Helper()
	r := a.run(args...)
	require.Equal(a.t, 0, r.code, "fmctl %q: stderr: %s", args, r.stderr)
	require.Empty(a.t, r.stderr)
	return r.stdout
}

// json runs fmctl -o json and decodes its output into v, strictly (no
// field unknown to v).
func (a *agent) json(v any, args ...string) {
	a.t.Helper()
	out := a.ok(append([]string{"-o", "json"}, args...)...)
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	require.NoError(a.t, dec.Decode(v), "output: %s", out)
	require.False(a.t, dec.More(), "more than one JSON value: %s", out)
}

func (a *agent) register(name string, kind api.Kind) {
	a.t.Helper()
	_, err := a.c.Register(ctxT(a.t), name, kind)
	require.NoError(a.t, err)
}

func (a *agent) raise(name, cause string, sev api.Severity) {
	a.t.Helper()
	_, err := a.c.Raise(ctxT(a.t), name, cause, sev)
	require.NoError(a.t, err)
}

func (a *agent) get(name string) *api.Entity {
	a.t.Helper()
	e, err := a.c.Get(ctxT(a.t), name)
	require.NoError(a.t, err)
	return e
}

// table parses an aligned table whose first line is the header: each
// column starts where its header word starts. It returns one map per row,
// keyed by header.
func table(t *testing.T, text string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	require.NotEmpty(t, lines)
	header := lines[0]
	var names []string
	var starts []int
	for i := 0; i < len(header); i++ {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
			end := strings.IndexByte(header[i:], ' ')
			if end < 0 {
				end = len(header) - i
			}
			names = append(names, header[i:i+end])
		}
	}
	var rows []map[string]string
	for _, l := range lines[1:] {
		row := map[string]string{}
		for j, s := range starts {
			end := len(l)
			if j+1 < len(starts) {
				end = min(starts[j+1], len(l))
				require.True(t, end == len(l) || l[end-1] == ' ', "cell %s of %q overflows its column", names[j], l)
			}
			if s < len(l) {
				row[names[j]] = strings.TrimSpace(l[s:end])
			} else {
				row[names[j]] = ""
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// header returns the header words of a table.
func header(text string) []string {
	return strings.Fields(strings.SplitN(text, "\n", 2)[0])
}

// keyValues parses "key: value" lines up to the first blank line.
func keyValues(text string) map[string]string {
	kv := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if l == "" {
			break
		}
		k, v, ok := strings.Cut(l, ":")
		if ok {
			kv[k] = strings.TrimSpace(v)
		}
	}
	return kv
}

// ---- status ----

func TestStatus(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.register("svc/a", api.KindService)

	out := a.ok("status")
	kv := keyValues(out)
	assert.Equal(t, map[string]string{
		"node": "1", "cluster": "7", "role": "master", "epoch": "1", "master": "1",
		"vice": "none", "stale": "no", "table seq": "1", "digest": "0x0000000000000000",
		"incarnation": "1",
	}, kv)
	assert.NotContains(t, out, "WARNING")
	_, members, ok := strings.Cut(out, "\n\n")
	require.True(t, ok, out)
	assert.Equal(t, []string{"NODE", "INC", "ROLE", "STATE", "LINK-A", "LINK-B", "HEARD-A", "HEARD-B", "PRIO", "ELIGIBLE", "VERSION", "BOUND"}, header(members))
	assert.Equal(t, []map[string]string{{
		"NODE": "1*", "INC": "1", "ROLE": "master", "STATE": "up", "LINK-A": "up", "LINK-B": "up",
		"HEARD-A": "-", "HEARD-B": "-", "PRIO": "10", "ELIGIBLE": "yes", "VERSION": "-", "BOUND": "-",
	}}, table(t, members))

	var st api.Status
	a.json(&st, "status")
	want, err := a.c.Status(ctxT(t))
	require.NoError(t, err)
	assert.Equal(t, *want, st)
	assert.Equal(t, wire.NodeID(1), st.Master)
	assert.Equal(t, uint64(1), st.TableSeq)
}

func TestStatusStaleCluster(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	st := &api.Status{
		Node: 3, Cluster: 42, Role: api.RoleMember, Epoch: 7, Master: 0, Vice: 2, Stale: true,
		TableSeq: 1042, Digest: 0x9ae16a3b2f90404f, Incarnation: 1741944413000000000,
		Members: []api.Member{
			{Node: 3, Incarnation: 1741944413000000000, Role: api.RoleMember, State: api.StateUp,
				Links: api.Links{A: true}, Priority: 100, Eligible: true},
			{Node: 2, Incarnation: 1741944400000000000, Role: api.RoleVice, State: api.StateUp,
				Links: api.Links{A: true, B: true}, Priority: 150, Eligible: true},
			{Node: 1, Incarnation: 1741944300000000000, Role: api.RoleMaster, State: api.StateDown,
				Priority: 200, Eligible: false},
		},
	}
	a.h.setStatus(st)

	out := a.ok("status")
	lines := strings.Split(out, "\n")
	assert.True(t, strings.HasPrefix(lines[0], "WARNING: cluster STALE"), "first line: %q", lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "WARNING: no master"), "second line: %q", lines[1])
	kv := keyValues(strings.Join(lines[2:], "\n"))
	assert.Equal(t, "yes", kv["stale"])
	assert.Equal(t, "none", kv["master"])
	assert.Equal(t, "2", kv["vice"])
	assert.Equal(t, "vice-master", table(t, out[strings.Index(out, "NODE"):])[1]["ROLE"])
	assert.Equal(t, "0x9ae16a3b2f90404f", kv["digest"])
	assert.Equal(t, fmt.Sprintf("%06x", uint64(1741944413000000000)&0xffffff), kv["incarnation"], "short incarnation")

	rows := table(t, out[strings.Index(out, "NODE"):])
	require.Len(t, rows, 3)
	assert.Equal(t, []string{"1", "2", "3*"}, []string{rows[0]["NODE"], rows[1]["NODE"], rows[2]["NODE"]}, "sorted by node, this node marked")
	assert.Equal(t, map[string]string{
		"NODE": "1", "INC": fmt.Sprintf("%06x", uint64(1741944300000000000)&0xffffff), "ROLE": "master", "STATE": "down",
		"LINK-A": "down", "LINK-B": "down", "HEARD-A": "-", "HEARD-B": "-", "PRIO": "200", "ELIGIBLE": "no", "VERSION": "-", "BOUND": "-",
	}, rows[0])
	assert.Equal(t, "up", rows[2]["LINK-A"])
	assert.Equal(t, "down", rows[2]["LINK-B"])

	var got api.Status
	a.json(&got, "status")
	assert.True(t, got.Stale)
	assert.Equal(t, api.Digest(0x9ae16a3b2f90404f), got.Digest)
	assert.Equal(t, uint64(1741944413000000000), got.Incarnation)
	require.Len(t, got.Members, 3)
	assert.Equal(t, wire.NodeID(1), got.Members[0].Node, "members sorted by node")

	// The JSON field names are the contract.
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.ok("-o", "json", "status")), &raw))
	assert.ElementsMatch(t, []string{"node", "cluster", "role", "epoch", "master", "vice", "stale",
		"table_seq", "digest", "incarnation", "shm", "members", "timing", "quorum"}, keys(raw))
	assert.Equal(t, "0x9ae16a3b2f90404f", raw["digest"])
	m := raw["members"].([]any)[0].(map[string]any)
	assert.ElementsMatch(t, []string{"node", "incarnation", "role", "state", "links", "priority", "eligible"}, keys(m))
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ---- entities ----

func TestEntities(t *testing.T) {
	t.Parallel()
	a := startAgent(t)

	// Empty table.
	assert.Equal(t, "no entities\n", a.ok("entities"))
	var none []api.Entity
	a.json(&none, "entities")
	assert.NotNil(t, none, "an empty list is [], not null")
	assert.Empty(t, none)

	a.register("svc/billing", api.KindService)
	a.register("node/3", api.KindNode)
	a.register("node/3/link/b", api.KindLink)
	a.register("node/3/link/a", api.KindLink)
	a.raise("node/3/link/b", "link-down", api.SevMinor)
	a.raise("node/3/link/b", "crc-errors", api.SevMajor)
	_, err := a.c.SetState(ctxT(t), "svc/billing", api.StateDown)
	require.NoError(t, err)

	out := a.ok("entities")
	assert.Equal(t, []string{"NAME", "KIND", "OWNER", "STATE", "INC", "ALARMS", "CHANGED"}, header(out))
	rows := table(t, out)
	require.Len(t, rows, 4)
	var names []string
	for _, r := range rows {
		names = append(names, r["NAME"])
	}
	assert.Equal(t, []string{"node/3", "node/3/link/a", "node/3/link/b", "svc/billing"}, names, "sorted by name")
	assert.Equal(t, map[string]string{
		"NAME": "node/3/link/b", "KIND": "link", "OWNER": "1", "STATE": "up", "INC": "1",
		"ALARMS": "2 (major)", "CHANGED": rows[2]["CHANGED"],
	}, rows[2])
	assert.Regexp(t, `^\d+s$`, rows[2]["CHANGED"])
	assert.Equal(t, "0", rows[0]["ALARMS"])
	assert.Equal(t, "down", rows[3]["STATE"])

	// The alias and each filter, in both modes.
	assert.Equal(t, out, a.ok("ls"))
	filters := []struct {
		args []string
		want []string
	}{
		{[]string{"-prefix", "node/3/"}, []string{"node/3/link/a", "node/3/link/b"}},
		{[]string{"-kind", "link"}, []string{"node/3/link/a", "node/3/link/b"}},
		{[]string{"-kind", "node"}, []string{"node/3"}},
		{[]string{"-state", "down"}, []string{"svc/billing"}},
		{[]string{"-alarmed"}, []string{"node/3/link/b"}},
		{[]string{"-prefix", "node/", "-state", "up", "-kind", "link", "-alarmed"}, []string{"node/3/link/b"}},
		{[]string{"-prefix", "nothing/"}, nil},
	}
	for _, f := range filters {
		for _, cmd := range []string{"entities", "ls"} {
			args := append([]string{cmd}, f.args...)
			var es []api.Entity
			a.json(&es, args...)
			var got []string
			for _, e := range es {
				got = append(got, e.Name)
				want := a.get(e.Name)
				assert.Equal(t, *want, e, "the JSON is the api.Entity")
			}
			assert.Equal(t, f.want, got, "%q", args)

			out := a.ok(args...)
			if f.want == nil {
				assert.Equal(t, "no entities\n", out)
				continue
			}
			got = nil
			for _, r := range table(t, out) {
				got = append(got, r["NAME"])
			}
			assert.Equal(t, f.want, got, "%q", args)
		}
	}

	// Global flags after the command.
	var es []api.Entity
	require.NoError(t, json.Unmarshal([]byte(a.ok("ls", "-kind", "node", "-o", "json")), &es))
	require.Len(t, es, 1)
	assert.Equal(t, "node/3", es[0].Name)

	// Bad filter values are usage errors.
	for _, args := range [][]string{{"ls", "-kind", "toaster"}, {"ls", "-state", "sideways"}, {"ls", "extra"}} {
		r := a.run(args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Contains(t, r.stderr, "Usage:")
		assert.Empty(t, r.stdout)
	}
}

// ---- get ----

func TestGet(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.register("svc/billing", api.KindService)
	a.raise("svc/billing", "rpc-timeout", api.SevMajor)
	a.raise("svc/billing", "slow", api.SevWarning)
	a.raise("svc/billing", "no-db", api.SevCritical)
	want := a.get("svc/billing")

	out := a.ok("get", "svc/billing")
	kv := keyValues(out)
	assert.Equal(t, "svc/billing", kv["name"])
	assert.Equal(t, want.ID.String(), kv["id"])
	assert.Equal(t, "service", kv["kind"])
	assert.Equal(t, "1", kv["owner"])
	assert.Equal(t, "up", kv["state"])
	assert.Equal(t, "1", kv["incarnation"])
	assert.Equal(t, "3", kv["alarms"])
	assert.Regexp(t, `^\d+s ago \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\), seq 4, by node 1$`, kv["changed"])

	_, alarms, ok := strings.Cut(out, "\n\n")
	require.True(t, ok, out)
	assert.Equal(t, []string{"SEVERITY", "CAUSE", "RAISED", "BY"}, header(alarms))
	rows := table(t, alarms)
	require.Len(t, rows, 3)
	assert.Equal(t, []string{"critical", "major", "warning"}, []string{rows[0]["SEVERITY"], rows[1]["SEVERITY"], rows[2]["SEVERITY"]})
	assert.Equal(t, "no-db", rows[0]["CAUSE"])
	assert.Equal(t, "1", rows[0]["BY"])
	assert.Regexp(t, `^\d+s +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, rows[0]["RAISED"])

	var e api.Entity
	a.json(&e, "get", "svc/billing")
	assert.Equal(t, *want, e)

	// No alarms: no alarm table.
	a.register("svc/quiet", api.KindService)
	out = a.ok("get", "svc/quiet")
	assert.Equal(t, "0", keyValues(out)["alarms"])
	assert.NotContains(t, out, "SEVERITY")
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.ok("get", "svc/quiet", "-o", "json")), &raw))
	assert.Equal(t, []any{}, raw["alarms"], "alarms is [] when none")
	assert.ElementsMatch(t, []string{"id", "name", "kind", "owner", "state", "incarnation", "changed_at",
		"changed_seq", "changed_by", "alarms"}, keys(raw))

	// Not found: exit 3, in both modes, one line on stderr.
	for _, o := range []string{"table", "json"} {
		r := a.run("-o", o, "get", "svc/nope")
		assert.Equal(t, exitNotFound, r.code)
		assert.Empty(t, r.stdout)
		assert.Equal(t, "fmctl: get svc/nope: entity \"svc/nope\": not found\n", r.stderr)
	}

	// Usage.
	for _, args := range [][]string{{"get"}, {"get", "a", "b"}, {"get", ""}} {
		r := a.run(args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Contains(t, r.stderr, "fmctl [global flags] get NAME")
	}
}

// ---- alarms ----

func TestAlarms(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	assert.Equal(t, "no active alarms\n", a.ok("alarms"))
	var none []alarmRow
	a.json(&none, "alarms")
	assert.NotNil(t, none)
	assert.Empty(t, none)

	for _, n := range []string{"node/1", "node/1/link/a", "svc/billing", "svc/web"} {
		a.register(n, api.KindCustom)
	}
	// Raised in this order; each later than the one before.
	raised := []struct {
		name, cause string
		sev         api.Severity
	}{
		{"svc/web", "slow", api.SevWarning},
		{"node/1/link/a", "link-down", api.SevMajor},
		{"svc/billing", "rpc-timeout", api.SevMajor},
		{"svc/billing", "no-db", api.SevCritical},
		{"node/1", "odd", api.SevIndeterminate},
		{"svc/web", "cert-expiry", api.SevMinor},
	}
	for _, r := range raised {
		a.raise(r.name, r.cause, r.sev)
		time.Sleep(2 * time.Millisecond) // distinct raised-at times
	}
	want := []string{
		"critical svc/billing no-db",
		"major node/1/link/a link-down",
		"major svc/billing rpc-timeout",
		"minor svc/web cert-expiry",
		"warning svc/web slow",
		"indeterminate node/1 odd",
	}

	out := a.ok("alarms")
	assert.Equal(t, []string{"SEVERITY", "ENTITY", "CAUSE", "RAISED", "BY"}, header(out))
	var got []string
	for _, r := range table(t, out) {
		got = append(got, r["SEVERITY"]+" "+r["ENTITY"]+" "+r["CAUSE"])
		assert.Regexp(t, `^\d+s +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, r["RAISED"])
		assert.Equal(t, "1", r["BY"])
	}
	assert.Equal(t, want, got)

	var rows []alarmRow
	a.json(&rows, "alarms")
	got = nil
	for _, r := range rows {
		got = append(got, string(r.Severity)+" "+r.Entity+" "+r.Cause)
		e := a.get(r.Entity)
		var found bool
		for _, al := range e.Alarms {
			if al.Cause == r.Cause {
				found = true
				assert.Equal(t, al, r.Alarm)
			}
		}
		assert.True(t, found, "%v", r)
	}
	assert.Equal(t, want, got)

	// The JSON objects have exactly the documented fields.
	var raw []map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.ok("-o", "json", "alarms")), &raw))
	require.Len(t, raw, len(want))
	for _, r := range raw {
		assert.Equal(t, []string{"cause", "entity", "raised_at", "raised_by", "severity"}, keys(r))
		_, err := time.Parse(time.RFC3339Nano, r["raised_at"].(string))
		assert.NoError(t, err)
		assert.True(t, strings.HasSuffix(r["raised_at"].(string), "Z"), "UTC")
	}

	// -prefix.
	var some []alarmRow
	a.json(&some, "alarms", "-prefix", "svc/web")
	require.Len(t, some, 2)
	assert.Equal(t, "cert-expiry", some[0].Cause)
}

func TestSortAlarmsTies(t *testing.T) {
	t0 := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	rows := []alarmRow{
		{Entity: "b", Alarm: api.Alarm{Cause: "x", Severity: api.SevMajor, RaisedAt: t0}},
		{Entity: "a", Alarm: api.Alarm{Cause: "y", Severity: api.SevMajor, RaisedAt: t0}},
		{Entity: "a", Alarm: api.Alarm{Cause: "x", Severity: api.SevMajor, RaisedAt: t0}},
		{Entity: "z", Alarm: api.Alarm{Cause: "q", Severity: "bogus", RaisedAt: t0}},
		{Entity: "c", Alarm: api.Alarm{Cause: "x", Severity: api.SevMajor, RaisedAt: t0.Add(-time.Second)}},
	}
	sortAlarms(rows)
	var got []string
	for _, r := range rows {
		got = append(got, r.Entity+"/"+r.Cause)
	}
	assert.Equal(t, []string{"c/x", "a/x", "a/y", "b/x", "z/q"}, got)
}

// ---- writes ----

func TestRegisterUnregister(t *testing.T) {
	t.Parallel()
	a := startAgent(t)

	out := a.ok("register", "svc/billing", "-kind", "service")
	assert.Equal(t, "registered svc/billing: service, owner 1, up, incarnation 1, seq 1\n", out)

	var e api.Entity
	a.json(&e, "register", "-kind", "service", "svc/billing")
	assert.Equal(t, "svc/billing", e.Name)
	assert.Equal(t, api.KindService, e.Kind)
	assert.Equal(t, uint64(2), e.Incarnation, "re-registered")
	assert.Equal(t, *a.get("svc/billing"), e)

	// -process ties the entity to the caller (fmctl: this test process);
	// -txn is accepted.
	a.ok("register", "node/1/proc/x", "-kind", "process", "-process", "-txn")
	calls := a.h.Calls()
	last := calls[len(calls)-1]
	assert.Equal(t, "node/1/proc/x", last.Name)
	assert.Equal(t, int32(os.Getpid()), last.Process)

	// Errors from the agent: collision is exit 1.
	r := a.run("register", "svc/billing", "-kind", "node")
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "fmctl: register svc/billing: \"svc/billing\" is registered as a service: name collision\n", r.stderr)

	// Usage.
	for _, args := range [][]string{
		{"register", "svc/x"},                     // no -kind
		{"register", "svc/x", "-kind", "toaster"}, // bad kind
		{"register", "-kind", "node"},             // no NAME
		{"register", "a", "b", "-kind", "node"},   // two NAMEs
		{"register", "a", "-kind"},                // flag without value
		{"register", "a", "-colour", "red"},       // unknown flag
	} {
		r := a.run(args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Contains(t, r.stderr, "fmctl [global flags] register NAME -kind K", "%q", args)
		assert.Empty(t, r.stdout)
	}

	out = a.ok("unregister", "svc/billing")
	assert.Equal(t, "unregister svc/billing: verdict unregister, seq 4\n", out)
	r = a.run("unregister", "svc/billing")
	assert.Equal(t, exitNotFound, r.code)
	assert.Equal(t, "fmctl: unregister svc/billing: entity \"svc/billing\": not found\n", r.stderr)

	var res api.ReportResult
	a.json(&res, "unregister", "node/1/proc/x")
	assert.Equal(t, api.ReportResult{Seq: 5, Verdict: "unregister"}, res)
}

func TestReportRaiseClear(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.register("svc/billing", api.KindService)

	out := a.ok("report", "svc/billing", "-cause", "rpc-timeout", "-severity", "major")
	assert.Equal(t, "report svc/billing: verdict raise, seq 2\n", out)
	e := a.get("svc/billing")
	require.Len(t, e.Alarms, 1)
	assert.Equal(t, api.SevMajor, e.Alarms[0].Severity)

	var res api.ReportResult
	a.json(&res, "report", "svc/billing", "-cause", "dead", "-severity", "critical", "-txn")
	assert.Equal(t, api.ReportResult{Seq: 3, Verdict: "down"}, res)
	assert.Equal(t, api.StateDown, a.get("svc/billing").State)

	// The fake ignores reports on unknown entities: seq 0.
	out = a.ok("report", "svc/nope", "-cause", "x")
	assert.Equal(t, "report svc/nope: verdict ignore, nothing changed\n", out)
	a.json(&res, "report", "svc/nope", "-cause", "x")
	assert.Equal(t, api.ReportResult{Seq: 0, Verdict: "ignore"}, res)

	// raise: severity defaults to indeterminate.
	out = a.ok("raise", "svc/billing", "-cause", "slow")
	assert.Equal(t, "raise svc/billing: verdict raise, seq 4\n", out)
	a.json(&res, "raise", "svc/billing", "-cause", "hot", "-severity", "minor")
	assert.Equal(t, api.ReportResult{Seq: 5, Verdict: "raise"}, res)
	sev := map[string]api.Severity{}
	for _, al := range a.get("svc/billing").Alarms {
		sev[al.Cause] = al.Severity
	}
	assert.Equal(t, map[string]api.Severity{"rpc-timeout": api.SevMajor, "slow": api.SevIndeterminate, "hot": api.SevMinor}, sev)

	r := a.run("raise", "svc/nope", "-cause", "x")
	assert.Equal(t, exitNotFound, r.code)

	// clear.
	out = a.ok("clear", "svc/billing", "-cause", "slow")
	assert.Equal(t, "clear svc/billing: verdict clear, seq 6\n", out)
	a.json(&res, "clear", "svc/billing", "-cause", "hot")
	assert.Equal(t, api.ReportResult{Seq: 7, Verdict: "clear"}, res)
	r = a.run("clear", "svc/billing", "-cause", "hot")
	assert.Equal(t, exitNotFound, r.code, "no such alarm")
	assert.Equal(t, "fmctl: clear svc/billing: no alarm \"hot\" on \"svc/billing\": not found\n", r.stderr)

	// Usage.
	for _, args := range [][]string{
		{"report", "svc/billing"},
		{"report", "svc/billing", "-cause", "x", "-severity", "dire"},
		{"raise", "svc/billing"},
		{"raise", "svc/billing", "-cause", "x", "-severity", ""},
		{"clear", "svc/billing"},
		{"clear", "-cause", "x"},
	} {
		r := a.run(args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Contains(t, r.stderr, "Usage:", "%q", args)
	}

	// An invalid cause is refused before connecting, by the api package's
	// own rule (the agent would answer bad_request with the same words).
	r = a.run("raise", "svc/billing", "-cause", strings.Repeat("x", 65))
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "fmctl raise: cause is 65 bytes, the limit is 64")
}

func TestUpDown(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.register("node/1/proc/x", api.KindProcess)

	assert.Equal(t, "down node/1/proc/x: verdict down, seq 2\n", a.ok("down", "node/1/proc/x"))
	assert.Equal(t, api.StateDown, a.get("node/1/proc/x").State)
	assert.Equal(t, "down node/1/proc/x: verdict ignore, nothing changed\n", a.ok("down", "node/1/proc/x"))

	var res api.ReportResult
	a.json(&res, "up", "node/1/proc/x")
	assert.Equal(t, api.ReportResult{Seq: 3, Verdict: "up"}, res)
	assert.Equal(t, api.StateUp, a.get("node/1/proc/x").State)

	for _, cmd := range []string{"up", "down"} {
		r := a.run(cmd, "nope")
		assert.Equal(t, exitNotFound, r.code)
		assert.Equal(t, "fmctl: "+cmd+" nope: entity \"nope\": not found\n", r.stderr)
		assert.Equal(t, exitUsage, a.run(cmd).code)
	}
}

func TestSwitchover(t *testing.T) {
	t.Parallel()
	a := startAgent(t)

	r := a.run("switchover")
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "fmctl: switchover: no vice-master to hand over to: unsupported\n", r.stderr)

	a.h.SetVice(2)
	out := a.ok("switchover")
	assert.Contains(t, out, "switchover")
	var st api.Status
	a.json(&st, "status")
	assert.Equal(t, wire.NodeID(2), st.Master)

	a.h.SetVice(1)
	var empty map[string]any
	a.json(&empty, "switchover")
	assert.Empty(t, empty)
	assert.Equal(t, exitUsage, a.run("switchover", "now").code)
}

func TestWritePermissionDenied(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.h.setHook(func(ctx context.Context, m string) error {
		if m == "set_state" {
			return api.Errorf(api.ErrPermission, "node 1 does not own %q", "svc/x")
		}
		return nil
	})
	r := a.run("down", "svc/x")
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "fmctl: down svc/x: node 1 does not own \"svc/x\"\n", r.stderr)
}

// ---- watch ----

// watching runs fmctl watch in the background until stop.
type watching struct {
	out, err testutil.SyncBuffer
	cancel   context.CancelFunc
	done     chan int
}

func (a *agent) watch(args ...string) *watching {
	a.t.Helper()
	ctx, cancel := context.WithCancel(ctxT(a.t))
	w := &watching{cancel: cancel, done: make(chan int, 1)}
	before := a.h.WatcherCount()
	go func() {
		w.done <- run(ctx, append([]string{"-socket", a.path}, args...), &w.out, &w.err)
	}()
	require.Eventually(a.t, func() bool { return a.h.WatcherCount() > before }, 10*time.Second, time.Millisecond,
		"the watch did not subscribe; stderr: %s", w.err.String())
	a.t.Cleanup(cancel)
	return w
}

// waitLines waits until w printed n lines.
func (w *watching) waitLines(t *testing.T, n int) []string {
	t.Helper()
	require.Eventually(t, func() bool { return len(w.out.Lines()) >= n }, 10*time.Second, time.Millisecond,
		"got %q", w.out.String())
	return w.out.Lines()
}

// stop interrupts the watch (Ctrl-C) and returns its exit status.
func (w *watching) stop(t *testing.T) int {
	t.Helper()
	w.cancel()
	select {
	case code := <-w.done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end")
		return -1
	}
}

func TestWatchTable(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.register("other/x", api.KindCustom)
	w := a.watch("watch", "-prefix", "svc/")

	a.register("svc/billing", api.KindService)
	a.raise("svc/billing", "rpc-timeout", api.SevMajor)
	a.register("other/y", api.KindCustom) // not under the prefix
	_, err := a.c.Clear(ctxT(t), "svc/billing", "rpc-timeout")
	require.NoError(t, err)
	_, err = a.c.SetState(ctxT(t), "svc/billing", api.StateDown)
	require.NoError(t, err)
	_, err = a.c.Unregister(ctxT(t), "svc/billing")
	require.NoError(t, err)

	lines := w.waitLines(t, 5)
	assert.Equal(t, 0, w.stop(t), "Ctrl-C is the normal end; stderr: %s", w.err.String())
	assert.Empty(t, w.err.String())
	require.Len(t, lines, 5, "%q", lines)
	var got [][]string
	for _, l := range lines {
		f := strings.Fields(l)
		_, err := time.Parse(time.RFC3339Nano, f[0])
		assert.NoError(t, err, "time in %q", l)
		assert.True(t, strings.HasSuffix(f[0], "Z"), l)
		got = append(got, f[1:])
	}
	assert.Equal(t, [][]string{
		{"2", "register", "svc/billing", "up"},
		{"3", "raise", "svc/billing", "up", "rpc-timeout", "(major)"},
		{"5", "clear", "svc/billing", "up", "rpc-timeout"}, // 4 is other/y
		{"6", "state", "svc/billing", "down"},
		{"7", "unregister", "svc/billing", "-"},
	}, got)
}

func TestWatchJSON(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	w := a.watch("-o", "json", "watch")

	a.register("node/1", api.KindNode)
	a.raise("node/1", "hot", api.SevMinor)
	lines := w.waitLines(t, 2)
	assert.Equal(t, 0, w.stop(t))

	require.Len(t, lines, 2)
	var evs []api.Event
	for _, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		var ev api.Event
		require.NoError(t, dec.Decode(&ev), l)
		evs = append(evs, ev)
	}
	assert.Equal(t, uint64(1), evs[0].Seq)
	assert.Equal(t, api.EventRegister, evs[0].Kind)
	assert.Equal(t, "", evs[0].Cause)
	assert.Equal(t, uint64(2), evs[1].Seq)
	assert.Equal(t, api.EventRaise, evs[1].Kind)
	assert.Equal(t, "hot", evs[1].Cause)
	assert.Equal(t, *a.get("node/1"), evs[1].Entity)

	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &raw))
	assert.Equal(t, []string{"entity", "kind", "seq"}, keys(raw), "cause omitted when empty")
	assert.Equal(t, []any{}, raw["entity"].(map[string]any)["alarms"])
}

func TestWatchAgentGoesAway(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	w := a.watch("watch")
	a.stop()
	select {
	case code := <-w.done:
		assert.Equal(t, exitFailure, code)
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end when the agent stopped")
	}
	assert.True(t, strings.HasPrefix(w.err.String(), "fmctl: watch: the agent is unavailable"), w.err.String())
	assert.Equal(t, 1, strings.Count(w.err.String(), "\n"), "one line: %q", w.err.String())
}

func TestWatchSubscribeTimeout(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.h.setHook(func(ctx context.Context, m string) error {
		if m == "watch" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	start := time.Now()
	r := a.run("-timeout", "200ms", "watch")
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "fmctl: watch: no answer from the agent within 200ms (-timeout)\n", r.stderr)
}

// ---- the agent is not there, or slow ----

func TestAgentNotRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.sock")

	// A stale socket: a file nobody listens on.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	ln.Close()

	for _, path := range []string{missing, stale} {
		for _, args := range [][]string{{"status"}, {"ls"}, {"get", "x"}, {"alarms"}, {"watch"},
			{"register", "x", "-kind", "node"}, {"switchover"}, {"-o", "json", "status"}} {
			r := fmctl(t, append([]string{"-socket", path}, args...)...)
			assert.Equal(t, exitFailure, r.code, "%q", args)
			assert.Empty(t, r.stdout)
			assert.True(t, strings.HasPrefix(r.stderr, "fmctl: connecting to the agent at "+path+": "), r.stderr)
			assert.Contains(t, r.stderr, "is fmagent running?")
			assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		}
	}
	r := fmctl(t, "-socket", missing, "status")
	assert.Equal(t, "fmctl: connecting to the agent at "+missing+
		": connect: no such file or directory (is fmagent running? set -socket or $FMAGENT_SOCKET)\n", r.stderr)
	r = fmctl(t, "-socket", stale, "status")
	assert.Contains(t, r.stderr, "connection refused")

	// version needs no agent.
	r = fmctl(t, "-socket", missing, "version")
	assert.Equal(t, 0, r.code)
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.register("svc/x", api.KindService)
	a.h.setHook(func(ctx context.Context, m string) error {
		<-ctx.Done() // a hung agent
		return ctx.Err()
	})
	start := time.Now()
	r := a.run("-timeout", "150ms", "get", "svc/x")
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "fmctl: get svc/x: no answer from the agent within 150ms (-timeout)\n", r.stderr)

	r = a.run("raise", "svc/x", "-cause", "c", "-timeout", "100ms")
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "fmctl: raise svc/x: no answer from the agent within 100ms (-timeout) (the outcome of the write is unknown)\n", r.stderr)
}

func TestAgentErrorsUnavailable(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.h.setHook(func(ctx context.Context, m string) error {
		return api.Errorf(api.ErrNoMaster, "no master: the cluster is electing")
	})
	r := a.run("report", "svc/x", "-cause", "c")
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "fmctl: report svc/x: no master: the cluster is electing\n", r.stderr)
}

func TestEnvironmentSocket(t *testing.T) {
	a := startAgent(t)
	t.Setenv("FMAGENT_SOCKET", a.path)
	r := fmctl(t, "-o", "json", "status")
	require.Equal(t, 0, r.code, r.stderr)
	var st api.Status
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	assert.Equal(t, wire.NodeID(1), st.Node)

	// -socket wins over the environment.
	r = fmctl(t, "-socket", filepath.Join(t.TempDir(), "x.sock"), "status")
	assert.Equal(t, exitFailure, r.code)

	// The default shown in the help is the resolved path.
	assert.Contains(t, fmctl(t, "help").stdout, a.path)
}

// ---- usage ----

func TestUsage(t *testing.T) {
	t.Parallel()
	a := startAgent(t)

	// Asked for: stdout, exit 0.
	for _, args := range [][]string{{"help"}, {"-h"}, {"-help"}} {
		r := a.run(args...)
		assert.Equal(t, 0, r.code, "%q", args)
		assert.Empty(t, r.stderr)
		for _, c := range commands {
			assert.Contains(t, r.stdout, "  "+c.name, "%q lists %s", args, c.name)
		}
		assert.Contains(t, r.stdout, "-socket")
		assert.Contains(t, r.stdout, "Exit status")
	}
	for _, c := range commands {
		for _, args := range [][]string{{"help", c.name}, {c.name, "-h"}, {c.name, "--help"}} {
			r := a.run(args...)
			assert.Equal(t, 0, r.code, "%q", args)
			assert.Empty(t, r.stderr)
			assert.Contains(t, r.stdout, "fmctl [global flags] "+c.name, "%q", args)
		}
	}
	r := a.run("help", "ls")
	assert.Contains(t, r.stdout, "-alarmed")
	assert.Contains(t, r.stdout, "Alias: ls")

	// Bad: stderr, exit 2, nothing on stdout.
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"help", "frobnicate"},
		{"help", "a", "b"},
		{"-bogus", "status"},
		{"-o", "yaml", "status"},
		{"status", "-o", "yaml"},
		{"-timeout", "soon", "status"},
		{"-timeout", "-1s", "status"},
		{"status", "extra"},
		{"version", "-x"},
		{"watch", "svc/"},
	} {
		r := a.run(args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Empty(t, r.stdout, "%q", args)
		assert.Contains(t, r.stderr, "Usage:", "%q", args)
		assert.True(t, strings.HasPrefix(r.stderr, "fmctl"), "%q: %s", args, r.stderr)
	}
	r = a.run("frobnicate")
	assert.True(t, strings.HasPrefix(r.stderr, "fmctl: unknown command \"frobnicate\"\n"), r.stderr)
	r = a.run("ls", "-colour")
	assert.True(t, strings.HasPrefix(r.stderr, "fmctl entities: flag provided but not defined: -colour\n"), r.stderr)
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := fmctl(t, "version")
	require.Equal(t, 0, r.code)
	assert.Regexp(t, `^fmctl \S+.* \(go1\.\S+ \S+/\S+, client protocol 1\)\n$`, r.stdout)

	r = fmctl(t, "-o", "json", "version")
	require.Equal(t, 0, r.code)
	var v versionInfo
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v))
	assert.Equal(t, 1, v.Protocol)
	assert.NotEmpty(t, v.Version)
	assert.True(t, strings.HasPrefix(v.Go, "go"))
}

// ---- pieces ----

func TestAge(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{999 * time.Millisecond, "0s"},
		{3 * time.Second, "3s"},
		{59 * time.Second, "59s"},
		{time.Minute, "1m"},
		{2*time.Minute + 10*time.Second, "2m10s"},
		{9*time.Minute + 59*time.Second, "9m59s"},
		{25*time.Minute + 30*time.Second, "25m"},
		{time.Hour, "1h"},
		{3*time.Hour + 20*time.Minute, "3h20m"},
		{4 * time.Hour, "4h"},
		{30*time.Hour + 5*time.Minute, "30h"},
		{3*24*time.Hour + 4*time.Hour, "3d4h"},
		{3 * 24 * time.Hour, "3d"},
		{12*24*time.Hour + 5*time.Hour, "12d"},
	} {
		assert.Equal(t, c.want, age(c.d), "%v", c.d)
	}
	assert.Equal(t, "-", since(time.Time{}, time.Now()))
}

func TestParseInterspersed(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  []string
		kind string
		txn  bool
	}{
		{[]string{"a", "-kind", "node"}, []string{"a"}, "node", false},
		{[]string{"-kind", "node", "a"}, []string{"a"}, "node", false},
		{[]string{"-txn", "a", "-kind=link", "b"}, []string{"a", "b"}, "link", true},
		{[]string{"a", "--", "-kind", "x"}, []string{"a", "-kind", "x"}, "", false},
		{[]string{"--", "-weird-name"}, []string{"-weird-name"}, "", false},
		{nil, nil, "", false},
	} {
		fs := newTestFlagSet()
		kind := fs.String("kind", "", "")
		txn := fs.Bool("txn", false, "")
		pos, err := parseInterspersed(fs, c.args)
		require.NoError(t, err, "%q", c.args)
		assert.Equal(t, c.pos, pos, "%q", c.args)
		assert.Equal(t, c.kind, *kind, "%q", c.args)
		assert.Equal(t, c.txn, *txn, "%q", c.args)
	}
	_, err := parseInterspersed(newTestFlagSet(), []string{"a", "-nope"})
	var ue *usageError
	assert.True(t, errors.As(err, &ue))
}

// A name that starts with "-" can be given after "--".
func TestDashName(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.ok("register", "-kind", "custom", "--", "-odd")
	assert.Equal(t, "-odd", keyValues(a.ok("get", "--", "-odd"))["name"])
}

func newTestFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// An "agent" that accepts connections and closes them at once: the
// connection is lost mid-request.
func TestConnectionLost(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rude.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	r := fmctl(t, "-socket", path, "status")
	assert.Equal(t, exitFailure, r.code)
	assert.Regexp(t, `^fmctl: status: connection to the agent lost \(.+\)\n$`, r.stderr)

	r = fmctl(t, "-socket", path, "down", "svc/x")
	assert.Equal(t, exitFailure, r.code)
	assert.Regexp(t, `^fmctl: down svc/x: connection to the agent lost \(.+\) \(the outcome of the write is unknown\)\n$`, r.stderr)
}
