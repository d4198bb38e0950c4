package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The datagram socket. Besides its stream socket, the agent reads the four
// fault writes (Report, Raise, Clear, SetState) from a SOCK_DGRAM unix
// socket next to it, DatagramPath(socket): one request frame per datagram,
// exactly as it would be written on the stream (header and flat JSON body),
// and one reply frame per request, sent back to the datagram's sender. The
// agent's real-time loop reads that socket itself, at SCHED_FIFO, and
// submits the write in the same wake-up; a write on the stream first waits
// for one of Go's normal threads to read the connection. Measured on five
// agents, in the same runs as the stream (bench.md, 4–5 December 2026): a
// report was written in every node's table 114–144 µs sooner at the median
// and 158–561 µs sooner at p99.
//
// The caller is who the kernel says sent the datagram (SCM_CREDENTIALS:
// pid, uid, gid); supplementary groups are not known there, so a write
// the Authorizer would refuse on uid and gid alone is answered
// ErrUseStream, and the client sends it again on the stream, where the
// connection's groups judge it. Nothing is written before that answer.

// DatagramSuffix is appended to the stream socket's path to name the
// datagram socket.
const DatagramSuffix = ".dgram"

// DatagramPath is the datagram socket of the agent whose stream socket is
// socket.
func DatagramPath(socket string) string { return socket + DatagramSuffix }

// MaxDatagram is the largest request datagram the agent reads: a header and
// a flat write's body (names up to MaxNameLen, causes up to MaxCauseLen).
const MaxDatagram = 4096

// CodeUseStream: the datagram socket cannot serve this request (its caller
// may be allowed by a supplementary group, which a datagram does not carry,
// or the agent is too busy to read it there); send it again on the stream
// socket. Nothing was written. Only a datagram's reply carries it.
const CodeUseStream = "use_stream"

// ErrUseStream is the sentinel of CodeUseStream.
var ErrUseStream = &Error{Code: CodeUseStream, Message: "use the stream socket"}

// IsDatagramOp reports whether o may be sent on the datagram socket.
func IsDatagramOp(o Op) bool {
	switch o {
	case OpReport, OpRaise, OpClear, OpSetState:
		return true
	}
	return false
}

// A ping is a datagram of a header alone with op status (0x0a): it is
// answered at once with an empty reply frame (op status|0x80, no flags, the
// same ID). The client library pings a new socket before its first write:
// the answer goes to the client's address as the kernel resolves it in the
// agent's network namespace, so a client in another namespace (a container
// given the agent's socket by a bind mount) would never get one, and keeps
// to the stream instead.

// ParseDatagram decodes one request datagram: its header and its body into
// a freshly allocated *ReportRequest, *RaiseRequest, *ClearRequest or
// *SetStateRequest, validated. A ping gives ok true with neither a request
// nor an error (answer it with AppendFrame and an empty body). A datagram
// too short for a header, or with a bad magic, gives ok false: it cannot be
// answered (nothing says it is a request). Otherwise an error is the reply
// to send (the header is then decoded).
func ParseDatagram(b []byte) (h Header, req any, ok bool, err error) {
	if len(b) < HeaderSize {
		return Header{}, nil, false, nil
	}
	h, err = ParseHeader(b)
	if errors.Is(err, ErrBadMagic) {
		return h, nil, false, nil
	}
	if err != nil {
		return h, nil, true, err
	}
	if h.Version != Version {
		return h, nil, true, Errorf(ErrUnsupportedVersion, "protocol version %d is not supported; this server speaks version %d", h.Version, Version)
	}
	body := b[HeaderSize:]
	if h.Op == OpStatus && len(body) == 0 && h.Length == 0 {
		return h, nil, true, nil // a ping
	}
	if int(h.Length) != len(body) {
		return h, nil, true, badRequest("datagram of %d bytes carries a body of %d, its header says %d", len(b), len(body), h.Length)
	}
	var v validator
	switch h.Op {
	case OpReport:
		v = new(ReportRequest)
	case OpRaise:
		v = new(RaiseRequest)
	case OpClear:
		v = new(ClearRequest)
	case OpSetState:
		v = new(SetStateRequest)
	default:
		return h, nil, true, Errorf(ErrUnknownOp, "op %s is not served on the datagram socket (only report, raise, clear and set_state)", h.Op)
	}
	if err := parse(body, v); err != nil {
		return h, nil, true, err
	}
	return h, v, true, nil
}

// AppendPing appends a ping with request ID id.
func AppendPing(dst []byte, id uint32) []byte {
	return AppendFrame(dst, Header{Version: Version, Op: OpStatus, ID: id}, nil)
}

// AppendReply appends the reply frame to request h: the result's JSON, or
// the error's with FlagError.
func AppendReply(dst []byte, h Header, res *ReportResult, err error) []byte {
	rh := Header{Version: Version, Op: replyOp(h.Op), ID: h.ID}
	if err == nil {
		body, merr := json.Marshal(orEmpty(res))
		if merr == nil {
			return AppendFrame(dst, rh, body)
		}
		err = Errorf(ErrInternal, "encoding the result: %v", merr)
	}
	body, merr := json.Marshal(ToError(err))
	if merr != nil {
		body = []byte(`{"code":"internal","message":"error not encodable"}`)
	}
	rh.Flags = FlagError
	return AppendFrame(dst, rh, body)
}

// AdmitDatagram decides whether cred may make the write op now, as the
// stream does (the Authorizer, then the uid's write rate), without ever
// waiting for a lock: the agent's real-time loop calls it. A caller the
// Authorizer refuses, and a rate limiter busy with another caller, give
// ErrUseStream.
func (s *Server) AdmitDatagram(cred Cred, op Op, now time.Time) error {
	s.init()
	if !s.Authorizer.MayOp(cred, op) {
		return Errorf(ErrUseStream, "uid %d (gid %d) is not allowed to %s on uid and gid alone; send it on the stream socket", cred.UID, cred.GID, op)
	}
	if !s.lim.mu.TryLock() {
		return Errorf(ErrUseStream, "the agent is busy; send it on the stream socket")
	}
	err := s.lim.writeLocked(cred.UID, now)
	s.lim.mu.Unlock()
	return err
}

// ListenDatagram creates the datagram socket path (SOCK_DGRAM, non-blocking,
// SO_PASSCRED) with the given mode and owner (-1 keeps the process's) and
// returns its descriptor. The caller holds the stream socket next to it
// (ListenOwned succeeded), so a socket file already at path is a stale
// one and is removed; a file that is not a socket is not. Like the stream
// socket, it never exists at path with another mode: it is bound under a
// private temporary directory, chmod-ed, then hard-linked into place
// (bound in place when that path would be too long).
func ListenDatagram(path string, mode os.FileMode, uid, gid int) (int, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return -1, fmt.Errorf("api: %s exists and is not a socket; not removing it", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return -1, fmt.Errorf("api: removing stale socket: %w", err)
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	fail := func(err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("api: datagram socket %s: %w", path, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return fail(os.NewSyscallError("setsockopt SO_PASSCRED", err))
	}
	dir := filepath.Dir(path)
	bindAt := path
	if len(dir)+len("/.fmsock0123456789/s") < maxSunPath {
		tmpdir, err := os.MkdirTemp(dir, ".fmsock")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(tmpdir)
		bindAt = filepath.Join(tmpdir, "s")
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: bindAt}); err != nil {
		return fail(os.NewSyscallError("bind", err))
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(bindAt, uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(bindAt, mode.Perm()); err != nil {
		return fail(err)
	}
	if bindAt != path {
		if err := os.Link(bindAt, path); err != nil {
			if errors.Is(err, os.ErrExist) {
				err = fmt.Errorf("%w (created by another process meanwhile)", syscall.EADDRINUSE)
			}
			return fail(err)
		}
	}
	return fd, nil
}

// ReadCred decodes the SCM_CREDENTIALS control message in oob (as recvmsg
// filled it on a socket with SO_PASSCRED), without allocating. oob need not
// be aligned (the agent's lies in a struct after a byte array): the headers
// are copied out, not read in place.
func ReadCred(oob []byte) (Cred, bool) {
	for len(oob) >= unix.CmsgSpace(0) {
		var h unix.Cmsghdr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr), oob)
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(oob) {
			return Cred{}, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_CREDENTIALS && l >= unix.CmsgLen(unix.SizeofUcred) {
			var u unix.Ucred
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&u)), unix.SizeofUcred), oob[unix.CmsgLen(0):])
			return Cred{PID: u.Pid, UID: u.Uid, GID: u.Gid}, true
		}
		sp := unix.CmsgSpace(l - unix.CmsgLen(0))
		if sp > len(oob) {
			break
		}
		oob = oob[sp:]
	}
	return Cred{}, false
}

// CredSpace is the control buffer ReadCred needs.
var CredSpace = unix.CmsgSpace(unix.SizeofUcred)
