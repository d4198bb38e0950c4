package transport

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

// Drops is how many datagrams the kernel has dropped on this transport's
// sockets, summed, because a socket's receive buffer was full (SO_MEMINFO,
// SK_MEMINFO_DROPS). It only grows. A node whose drops grow is deaf for a
// moment: peers' heartbeats may be among what was dropped (core.Deafened).
// It makes one getsockopt per socket and allocates nothing; call it from
// the receiving goroutine.
func (t *Transport) Drops() uint64 {
	var total uint64
	for n := wire.Net(0); n < wire.NumNets; n++ {
		ns, err := t.netState(n)
		if err != nil {
			continue
		}
		for _, s := range [3]*sock{ns.grp, ns.hb, ns.uni} {
			if s != nil && s.fd > 0 {
				total += sockDrops(s.fd)
			}
		}
	}
	return total
}

func sockDrops(fd int) uint64 {
	var mem [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mem))
	// Never blocks: a raw system call, as reader.recv's.
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0
	}
	return uint64(mem[unix.SK_MEMINFO_DROPS])
}
