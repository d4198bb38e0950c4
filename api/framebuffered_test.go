package api

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// frameBuffered is true only once a whole frame is in the buffer: a frame
// cut anywhere, header or body, still gets FrameTimeout.
func TestFrameBuffered(t *testing.T) {
	frame := AppendFrame(nil, Header{Version: Version, Op: OpRaise, ID: 7}, []byte(`{"name":"a","cause":"c"}`))
	empty := AppendFrame(nil, Header{Version: Version, Op: OpStatus, ID: 8}, nil)
	two := append(append([]byte(nil), frame...), empty...)
	for _, c := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"whole", frame, true},
		{"whole, empty body", empty, true},
		{"one and a half", append(append([]byte(nil), frame...), empty[:5]...), true},
		{"header only", frame[:HeaderSize], false},
		{"part of the header", frame[:HeaderSize-1], false},
		{"body cut", frame[:len(frame)-1], false},
		{"two", two, true},
	} {
		br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(c.in)), 4096)
		_, err := br.Peek(1)
		require.NoError(t, err)
		require.Equal(t, c.want, frameBuffered(br), c.name)
	}
	// An oversize length is not "buffered": ReadFrame refuses it at once.
	huge := append([]byte(nil), frame...)
	huge[12], huge[13], huge[14], huge[15] = 0xff, 0xff, 0xff, 0xff
	br := bufio.NewReaderSize(bytes.NewReader(huge), 4096)
	br.Peek(1)
	require.False(t, frameBuffered(br))
}
