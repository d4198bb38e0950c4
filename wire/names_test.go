package wire

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckName(t *testing.T) {
	for _, good := range []string{
		"node/1", "node/1/proc/worker", "svc/billing", "svc/café", "svc/данные", "svc/δ-1", "svc/東京",
		"custom/a b", "svc/x.y_z-1:2@3", "svc/ümlaut/Straße",
	} {
		require.NoError(t, CheckName(good), "%q", good)
	}
	for _, bad := range []string{
		"", "/node/1", "node/1/", "node//1", "/",
		"n\u043ede/1",          // Cyrillic о in a Latin word
		"svc/a\u200bb",         // zero-width space
		"svc/\u202eevil",       // bidi override
		"svc/\u2066x\u2069",    // bidi isolate
		"\ufeffnode/1",         // BOM
		"svc/caf\u0065\u0301",  // decomposed é
		"svc/\x01", "svc/\x7f", // C0, DEL
		"svc/\u0085",           // C1
		"svc/\xff", "svc/\xc3", // invalid UTF-8
		"svc/\ufffd",              // replacement character
		"svc/\u00a0x",             // no-break space
		"svc/\ue000",              // private use
		"svc/\U000e0001",          // language tag (Cf)
		string(make([]byte, 300)), // too long (and NULs)
	} {
		require.ErrorIs(t, CheckName(bad), ErrName, "%q", bad)
	}
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = CheckName("node/12/proc/worker-éé") }))
}
