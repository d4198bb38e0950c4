package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/wire"
)

func TestIDJSON(t *testing.T) {
	b, err := json.Marshal(api.ID(0xfedcba9876543210))
	require.NoError(t, err)
	assert.Equal(t, `"0xfedcba9876543210"`, string(b))
	b, err = json.Marshal(api.ID(1))
	require.NoError(t, err)
	assert.Equal(t, `"0x0000000000000001"`, string(b))

	var id api.ID
	require.NoError(t, json.Unmarshal([]byte(`"0xfedcba9876543210"`), &id))
	assert.Equal(t, api.ID(0xfedcba9876543210), id)
	require.NoError(t, json.Unmarshal([]byte(`18364758544493064720`), &id), "a number is accepted too")
	assert.Equal(t, api.ID(0xfedcba9876543210), id)
	for _, bad := range []string{`"fedcba"`, `"0x"`, `"0xzz"`, `"0x1ffffffffffffffff"`, `-1`, `1.5`, `true`} {
		assert.Error(t, json.Unmarshal([]byte(bad), &id), bad)
	}
	var d api.Digest
	require.NoError(t, json.Unmarshal([]byte(`"0x00000000000000ff"`), &d))
	assert.Equal(t, api.Digest(255), d)
	assert.Equal(t, "0x00000000000000ff", d.String())
}

func TestEntityJSONStable(t *testing.T) {
	e := api.Entity{
		ID: 0x1234, Name: "node/3/link/b", Kind: api.KindLink, Owner: 3, State: api.StateDown,
		Incarnation: 2, ChangedAt: time.Date(2025, 1, 2, 4, 4, 5, 6, time.FixedZone("CET", 3600)), ChangedSeq: 99, ChangedBy: 1,
	}
	b, err := json.Marshal(e)
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"0x0000000000001234","name":"node/3/link/b","kind":"link","owner":3,"state":"down",
		"incarnation":2,"changed_at":"2025-01-02T03:04:05.000000006Z","changed_seq":99,"changed_by":1,"alarms":[]}`, string(b))
	var back api.Entity
	require.NoError(t, json.Unmarshal(b, &back))
	e.Alarms = []api.Alarm{}
	assert.True(t, e.ChangedAt.Equal(back.ChangedAt))
	back.ChangedAt = e.ChangedAt
	assert.Equal(t, e, back)

	b, err = json.Marshal(api.Status{})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"members":[]`)
	assert.Contains(t, string(b), `"digest":"0x0000000000000000"`)
}

func TestEnumWireMapping(t *testing.T) {
	for _, k := range []api.Kind{api.KindNode, api.KindLink, api.KindProcess, api.KindService, api.KindCustom} {
		assert.NotZero(t, k.Wire())
		assert.Equal(t, k, api.KindOf(k.Wire()))
	}
	assert.Zero(t, api.Kind("x").Wire())
	for _, s := range []api.Severity{api.SevCritical, api.SevMajor, api.SevMinor, api.SevWarning, api.SevIndeterminate} {
		assert.NotZero(t, s.Wire())
		assert.Equal(t, s, api.SeverityOf(s.Wire()))
	}
	for _, s := range []api.State{api.StateUp, api.StateDown} {
		assert.Equal(t, s, api.StateOf(s.Wire()))
	}
	assert.Equal(t, api.RoleVice, api.RoleOf(wire.RoleVice))
	assert.Equal(t, string(api.RoleVice), wire.RoleVice.String())
	assert.Equal(t, string(api.RoleJoining), wire.RoleJoining.String())
}

func TestErrors(t *testing.T) {
	wrapped := fmt.Errorf("entity %q: %w", "x", api.ErrNotFound)
	e := api.ToError(wrapped)
	assert.Equal(t, &api.Error{Code: "not_found", Message: `entity "x": not found`}, e)
	assert.ErrorIs(t, e, api.ErrNotFound, "a decoded error matches its sentinel by code")
	assert.NotErrorIs(t, e, api.ErrCollision)
	assert.ErrorIs(t, fmt.Errorf("fmagent get: %w", e), api.ErrNotFound)
	var ae *api.Error
	assert.True(t, errors.As(fmt.Errorf("x: %w", e), &ae))

	assert.Equal(t, api.CodeTimeout, api.ToError(fmt.Errorf("x: %w", context.DeadlineExceeded)).Code)
	assert.Equal(t, api.CodeUnavailable, api.ToError(context.Canceled).Code)
	assert.Equal(t, api.CodeInternal, api.ToError(errors.New("boom")).Code)
	assert.Nil(t, api.ToError(nil))
	assert.Len(t, api.ToError(errors.New(strings.Repeat("é", 1000))).Message, 1024)
	assert.Equal(t, "no master", api.ErrNoMaster.Error())
}
