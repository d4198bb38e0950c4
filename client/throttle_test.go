package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/api/apitest"
	"github.com/fmagent/fmagent/client"
)

// A client over its write rate is slowed down to the rate, not failed; a
// context too short for the retry-after gets the throttled error.
func TestThrottledWritesRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fmagent.sock")
	srv := &api.Server{Handler: apitest.NewHandler(), Limits: api.Limits{WriteRate: 50, WriteBurst: 5}}
	ln, err := api.Listen(path, 0o660)
	require.NoError(t, err)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	c := dial(t, path)
	ctx := ctxT(t)
	_, err = c.Register(ctx, "svc/x", client.KindService)
	require.NoError(t, err)
	start := time.Now()
	for i := range 30 {
		_, err := c.Raise(ctx, "svc/x", fmt.Sprintf("c%d", i%4), client.SevMinor)
		require.NoError(t, err)
	}
	// 31 writes, 5 from the burst, 26 at 50/s: at least ~0.5 s.
	require.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)
	require.Positive(t, srv.LimitStats().Throttled)

	short, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	for range 10 {
		_, err = c.Raise(short, "svc/x", "c0", client.SevMinor)
		if err != nil {
			break
		}
	}
	require.Error(t, err)
}
