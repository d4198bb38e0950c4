package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
)

// Look-alike, invisible and invalid names are refused, never rewritten.
func TestLookAlikeNamesRefused(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	for i, body := range []string{
		`{"name":"n` + "\u043e" + `de/1","kind":"custom"}`,
		`{"name":"svc/a` + "\u200b" + `b","kind":"service"}`,
		`{"name":"svc/` + "\u202e" + `x","kind":"service"}`,
		`{"name":"` + "\ufeff" + `svc/x","kind":"service"}`,
		`{"name":"svc/x` + "\xff" + `","kind":"service"}`, // invalid UTF-8: the decoder would make it U+FFFD
		`{"name":"svc//x","kind":"service"}`,
		`{"name":"svc/e` + "\u0301" + `","kind":"service"}`,
	} {
		e := c.doErr(api.OpRegister, uint32(i+1), body)
		require.Equal(t, api.CodeBadRequest, e.Code, "%q: %s", body, e.Message)
	}
	c.do(api.OpRegister, 100, `{"name":"svc/café","kind":"service"}`, nil)
}
