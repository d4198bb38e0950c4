package api

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Framing constants. A frame is a fixed 16-byte header followed by a JSON
// body; all header integers are big-endian (network order):
//
//	offset size field
//	0      4    magic "FMAP" (0x464d4150)
//	4      1    version (1)
//	5      1    op
//	6      2    flags
//	8      4    request ID
//	12     4    body length (at most MaxBody)
const (
	Magic      uint32 = 0x464d4150 // "FMAP"
	Version    uint8  = 1
	HeaderSize        = 16
	// MaxBody is the largest body a frame may carry, in either direction.
	MaxBody = 64 << 10
)

// Op is the operation carried by a frame.
type Op uint8

// Request ops. A reply carries the request op with OpReply set.
const (
	OpRegister   Op = 0x01
	OpUnregister Op = 0x02
	OpReport     Op = 0x03
	OpRaise      Op = 0x04
	OpClear      Op = 0x05
	OpSetState   Op = 0x06
	OpGet        Op = 0x07
	OpList       Op = 0x08
	OpWatch      Op = 0x09
	OpStatus     Op = 0x0a
	OpSwitchover Op = 0x0b
	// OpEvent is never sent by a client: the server sends OpEvent|OpReply
	// frames carrying the events of a Watch, with the Watch's request ID.
	OpEvent Op = 0x0c
	// OpDaemons lists the supervised daemons (read-only).
	OpDaemons Op = 0x0d

	// OpReply is set in the op of every frame the server sends.
	OpReply Op = 0x80
)

var opNames = map[Op]string{
	OpRegister:   "register",
	OpUnregister: "unregister",
	OpReport:     "report",
	OpRaise:      "raise",
	OpClear:      "clear",
	OpSetState:   "set_state",
	OpGet:        "get",
	OpList:       "list",
	OpWatch:      "watch",
	OpStatus:     "status",
	OpSwitchover: "switchover",
	OpEvent:      "event",
	OpDaemons:    "daemons",
}

func (o Op) String() string {
	base := o &^ OpReply
	name, ok := opNames[base]
	if !ok {
		name = fmt.Sprintf("op(0x%02x)", uint8(base))
	}
	if o&OpReply != 0 {
		return name + "-reply"
	}
	return name
}

// IsRequest reports whether o is an op a client may send.
func (o Op) IsRequest() bool {
	return o >= OpRegister && o <= OpSwitchover || o == OpDaemons
}

// IsWrite reports whether o changes the cluster table (or the cluster) and so
// needs the Authorizer's consent.
func (o Op) IsWrite() bool {
	switch o {
	case OpRegister, OpUnregister, OpReport, OpRaise, OpClear, OpSetState, OpSwitchover:
		return true
	}
	return false
}

// Frame flags.
const (
	// FlagError: the body is an ErrorBody; this is the request's last frame.
	FlagError uint16 = 1 << 0
	// FlagMore: more frames for this request follow (a List chunk, a Watch
	// acknowledgement or an event).
	FlagMore uint16 = 1 << 1
)

// Header is the fixed part of a frame (the magic is implied).
type Header struct {
	Version uint8
	Op      Op
	Flags   uint16
	ID      uint32 // request ID, echoed in every reply frame
	Length  uint32 // body length
}

// PutHeader writes h with the magic into b[:HeaderSize].
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	binary.BigEndian.PutUint32(b[0:4], Magic)
	b[4] = h.Version
	b[5] = uint8(h.Op)
	binary.BigEndian.PutUint16(b[6:8], h.Flags)
	binary.BigEndian.PutUint32(b[8:12], h.ID)
	binary.BigEndian.PutUint32(b[12:16], h.Length)
}

// ParseHeader decodes b[:HeaderSize]. It returns the decoded header even when
// it also returns an error (bad magic, body length over MaxBody), so that the
// error reply can echo the request ID and op. The returned errors match
// ErrBadMagic or ErrFrameTooLarge with errors.Is.
func ParseHeader(b []byte) (Header, error) {
	_ = b[HeaderSize-1]
	h := Header{
		Version: b[4],
		Op:      Op(b[5]),
		Flags:   binary.BigEndian.Uint16(b[6:8]),
		ID:      binary.BigEndian.Uint32(b[8:12]),
		Length:  binary.BigEndian.Uint32(b[12:16]),
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != Magic {
		return h, newError(ErrBadMagic, fmt.Sprintf("bad magic 0x%08x, want 0x%08x (\"FMAP\")", m, Magic))
	}
	if h.Length > MaxBody {
		return h, newError(ErrFrameTooLarge, fmt.Sprintf("body length %d over the limit of %d bytes", h.Length, MaxBody))
	}
	return h, nil
}

// AppendFrame appends a frame with header h and body to dst. h.Length is set
// from len(body).
func AppendFrame(dst []byte, h Header, body []byte) []byte {
	var hb [HeaderSize]byte
	h.Length = uint32(len(body))
	PutHeader(hb[:], h)
	dst = append(dst, hb[:]...)
	return append(dst, body...)
}

// ReadFrame reads one frame from r. The body is freshly allocated. At a clean
// end of stream (no byte of a new frame read) it returns io.EOF; a stream cut
// inside a frame gives io.ErrUnexpectedEOF. A bad magic or an oversize length
// gives an error matching ErrBadMagic or ErrFrameTooLarge, with the header as
// decoded; the body is then not read.
func ReadFrame(r io.Reader) (Header, []byte, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return h, nil, err
	}
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	return h, body, nil
}
