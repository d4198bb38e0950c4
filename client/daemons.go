package client

import (
	"context"

	"github.com/fmagent/fmagent/api"
)

// Daemons lists the daemons the agent supervises ([[daemons]] in its
// configuration): PID, state, restarts, last exit status, backoff.
func (c *Client) Daemons(ctx context.Context) ([]api.Daemon, error) {
	var ds []api.Daemon
	if err := c.call(ctx, api.OpDaemons, &api.DaemonsRequest{}, &ds); err != nil {
		return nil, err
	}
	return ds, nil
}
