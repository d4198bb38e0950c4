package wire

// ReplayWidth is how many sequence numbers behind the newest one a
// ReplayWindow still admits (once each). Heartbeats on two networks plus a
// burst of updates reorder by a few packets at most; 128 leaves ample room.
const ReplayWidth = 2 * 64 // two words of bitmap

// ReplayWindow rejects replayed packets of one sender, keyed on the
// (incarnation, seq) pair of the header. Keep one per sender; the zero value
// is ready to use and admits anything but seq 0.
//
// Incarnations must grow across a sender's restarts (a boot counter or a
// boot timestamp), because a packet of a newer incarnation resets the window
// and one of an older incarnation is always a replay. Within an incarnation
// a packet is admitted once if its seq is newer than the newest admitted, or
// at most ReplayWidth-1 behind it and not seen yet.
//
// Only record (Accept or Admit) a packet after Codec.Open verified its MAC:
// otherwise a forged header with a huge incarnation or seq would shut the
// real sender out.
//
// A ReplayWindow is not safe for concurrent use.
type ReplayWindow struct {
	inc uint64
	top uint64 // newest seq admitted in inc; 0 when none yet
	// seen has bit i set (bit i of word i/64) when seq top-i was admitted.
	seen [2]uint64
}

// Check reports whether (inc, seq) would be admitted, without recording it:
// nil, or an error matching ErrReplay.
func (w *ReplayWindow) Check(inc, seq uint64) error {
	switch {
	case seq == 0:
		return errReplaySeq0
	case inc > w.inc:
		return nil
	case inc < w.inc:
		return errReplayInc
	case seq > w.top:
		return nil
	}
	back := w.top - seq
	if back >= ReplayWidth {
		return errReplayOld
	}
	if w.seen[back/64]&(1<<(back%64)) != 0 {
		return errReplayDup
	}
	return nil
}

// Accept records (inc, seq) as admitted. It is meant to follow a nil Check;
// recording a pair Check would reject changes nothing.
func (w *ReplayWindow) Accept(inc, seq uint64) {
	switch {
	case seq == 0 || inc < w.inc:
		return
	case inc > w.inc:
		*w = ReplayWindow{inc: inc, top: seq}
		w.seen[0] = 1
		return
	case seq > w.top:
		w.shift(seq - w.top)
		w.top = seq
		w.seen[0] |= 1
		return
	}
	if back := w.top - seq; back < ReplayWidth {
		w.seen[back/64] |= 1 << (back % 64)
	}
}

// Admit is Check followed, when it passes, by Accept.
func (w *ReplayWindow) Admit(inc, seq uint64) error {
	if err := w.Check(inc, seq); err != nil {
		return err
	}
	w.Accept(inc, seq)
	return nil
}

// shift moves the window forward by k: bit i becomes bit i+k.
func (w *ReplayWindow) shift(k uint64) {
	switch {
	case k >= ReplayWidth:
		w.seen = [2]uint64{}
	case k >= 64:
		w.seen[1] = w.seen[0] << (k - 64)
		w.seen[0] = 0
	default:
		w.seen[1] = w.seen[1]<<k | w.seen[0]>>(64-k)
		w.seen[0] <<= k
	}
}
