package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fmagent/fmagent/api"
)

// A write the cluster did not apply is a failure with its own exit status
// (4) and a line that says nothing changed, never "verdict raise" and 0
// (issue 8: with 8 alarms on an entity, fmctl raise printed a verdict and
// exited 0 while storing nothing).
func TestWriteNotAppliedExit4(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.register("svc/a", api.KindService)
	for _, tc := range []struct {
		method string
		err    error
		args   []string
	}{
		{"raise", api.Errorf(api.ErrLimit, `alarm "outage" on "svc/a" was not raised (seq 11 refused): the entity carries 8 alarms, the limit (max_alarms) is 8; clear one first`),
			[]string{"raise", "svc/a", "-cause", "outage", "-severity", "critical"}},
		{"register", api.Errorf(api.ErrLimit, `"svc/b" was not registered: the table holds 4096 entities and this node's shared memory holds 4096 ([shm] entities)`),
			[]string{"register", "svc/b", "-kind", "service"}},
		{"report", api.Errorf(api.ErrRefused, `"svc/a": not applied: core: rejected by the master`),
			[]string{"report", "svc/a", "-cause", "x"}},
	} {
		a.h.setHook(func(ctx context.Context, method string) error {
			if method == tc.method {
				return tc.err
			}
			return nil
		})
		r := a.run(tc.args...)
		assert.Equal(t, exitRefused, r.code, "%q", tc.args)
		assert.Empty(t, r.stdout, "%q", tc.args)
		assert.Equal(t, "fmctl: "+tc.args[0]+" "+tc.args[1]+": "+tc.err.Error()+" (not applied: nothing changed)\n", r.stderr)
	}
	a.h.setHook(nil)
	assert.Empty(t, a.get("svc/a").Alarms)
}
