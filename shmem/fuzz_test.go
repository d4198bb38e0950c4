package shmem_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// FuzzReaderSegment gives the reader a valid segment with bytes of the
// fuzzer's choosing written over it (at offsets it chooses: header, index,
// slots or ring), as a hostile or broken writer could leave it. Opening and
// every read must return (an error is fine) without crashing or hanging.
func FuzzReaderSegment(f *testing.F) {
	w, err := shmem.NewHeap(shmem.Options{Capacity: 16})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 10 {
		e := &shmem.Entity{Kind: wire.KindService, State: wire.StateUp, Owner: 1, Incarnation: 1}
		e.SetName(fmt.Sprintf("svc/%d", i))
		e.NAlarms = 1
		e.Alarms[0].Severity = wire.SevMajor
		if err := w.Put(e); err != nil {
			f.Fatal(err)
		}
	}
	base := append([]byte(nil), shmem.SegmentBytes(w)...)
	w.Close()
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0x10, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0x40, 0x01, 0x02})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, patch []byte) {
		seg := append([]byte(nil), base...)
		// patch: repeated [offset u32 | len u8 | bytes...].
		for len(patch) >= 5 {
			off := int(binary.BigEndian.Uint32(patch)) % len(seg)
			n := min(int(patch[4]), len(patch)-5)
			copy(seg[off:], patch[5:5+n])
			patch = patch[5+n:]
		}
		p := filepath.Join(dir, "seg")
		if err := os.WriteFile(p, seg, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := shmem.OpenWith(p, shmem.ReaderOptions{MaxRetries: 3, SpinRetries: 1, MaxWait: time.Millisecond, NoPIDCheck: true})
		if err != nil {
			return
		}
		defer r.Close()
		var e shmem.Entity
		for i := range 12 {
			r.ReadByName(fmt.Sprintf("svc/%d", i), &e)
		}
		r.Range(func(*shmem.Entity) bool { return true })
		r.Snapshot(nil)
		r.Header()
	})
}
