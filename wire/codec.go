package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"hash"
)

// Codec seals and opens datagrams of one cluster. It keeps one HMAC-SHA256
// state and a digest scratch buffer so that sealing and opening allocate
// nothing after NewCodec.
//
// A Codec is not safe for concurrent use: give each goroutine that sends or
// receives its own (each is well under a kilobyte).
type Codec struct {
	cluster uint32
	mac     hash.Hash
	sum     [sha256.Size]byte
	// accept are further keys Open verifies with, after mac: the keys of a
	// key change-over (AcceptKey).
	accept []hash.Hash
}

// NewCodec returns a Codec for the cluster with the given ID and key. The key
// is the cluster's shared secret; it should be at least 32 random bytes. The
// Codec keeps its own derived state, so the caller may wipe key afterwards.
func NewCodec(cluster uint32, key []byte) *Codec {
	c := &Codec{cluster: cluster, mac: hmac.New(sha256.New, key)}
	// The first Reset makes crypto/hmac save the keyed inner and outer
	// states (and allocate for them); every later Reset only restores them.
	// Doing it here keeps the first Seal/Open on the hot path allocation-free.
	c.mac.Reset()
	return c
}

// AcceptKey makes Open also accept datagrams sealed with key, besides the
// Codec's own key (which still seals everything it sends). It is how a key
// is changed without downtime: every node first accepts the new key, then
// seals with it while accepting the old one, then drops the old one
// (docs/security.md). A datagram under a wrong key costs one MAC per key:
// keep the change-over short.
func (c *Codec) AcceptKey(key []byte) {
	m := hmac.New(sha256.New, key)
	m.Reset() // see NewCodec
	c.accept = append(c.accept, m)
}

// Cluster returns the cluster ID the Codec stamps on and expects in packets.
func (c *Codec) Cluster() uint32 { return c.cluster }

// digest returns the truncated MAC of b, in c.sum.
func (c *Codec) digest(b []byte) []byte {
	c.mac.Reset()
	c.mac.Write(b)
	return c.mac.Sum(c.sum[:0])[:MACSize]
}

var zeroHeader [HeaderSize]byte

// begin validates h, stamps the Codec's cluster and type t on it, and reserves
// room for the header at the end of dst. It returns where the datagram starts.
func (c *Codec) begin(dst []byte, h *Header, t Type) ([]byte, int, error) {
	h.Type = t
	h.Cluster = c.cluster
	if err := checkHeader(h); err != nil {
		return dst, len(dst), err
	}
	return append(dst, zeroHeader[:]...), len(dst), nil
}

// seal finishes the datagram that starts at dst[start:] with its body
// already appended: it sets h.Length, writes the header and appends the MAC.
// On error dst is cut back to start.
func (c *Codec) seal(dst []byte, start int, h *Header) ([]byte, error) {
	n := len(dst) - start - HeaderSize
	if n > MaxBody {
		return dst[:start], errBodyTooBig
	}
	h.Length = uint16(n)
	putHeader(dst[start:], h)
	return append(dst, c.digest(dst[start:])...), nil
}

// Open authenticates one received datagram and returns its header and body.
// The checks run cheapest first, and the MAC last so that packets of other
// clusters or versions are counted under their own reason without hashing:
// size bounds (ErrTooBig, ErrShort), magic (ErrMagic), version (ErrVersion),
// reserved byte, type, flags, sender and seq (ErrMalformed), cluster
// (ErrCluster), body length against packet length (ErrShort if the packet is
// cut, ErrMalformed if it has bytes beyond the MAC), then the MAC in constant
// time (ErrAuth).
//
// On error the header is zero and body nil: nothing half-valid escapes. body
// aliases pkt (with its capacity capped at its length) and is valid until the
// caller reuses pkt. Open does not consult a replay window; the caller does,
// after Open succeeded, with h.Incarnation and h.Seq.
func (c *Codec) Open(pkt []byte) (h Header, body []byte, err error) {
	h, end, err := c.peek(pkt)
	if err != nil {
		return Header{}, nil, err
	}
	if !c.verify(pkt[:end], pkt[end:]) {
		return Header{}, nil, ErrAuth
	}
	return h, pkt[HeaderSize:end:end], nil
}

// Peek runs every check of Open but the MAC and returns the header, not
// yet authenticated: what a receiver may use to drop a packet before paying
// for the MAC (a replay of a known sender), never to act on.
func (c *Codec) Peek(pkt []byte) (Header, error) {
	h, _, err := c.peek(pkt)
	return h, err
}

func (c *Codec) peek(pkt []byte) (h Header, end int, err error) {
	if len(pkt) > MaxDatagram {
		return Header{}, 0, errPacketTooBig
	}
	if len(pkt) < Overhead {
		return Header{}, 0, errPacketShort
	}
	if binary.BigEndian.Uint16(pkt[offMagic:]) != Magic {
		return Header{}, 0, ErrMagic
	}
	if pkt[offVersion] != Version {
		return Header{}, 0, ErrVersion
	}
	if pkt[offReserved] != 0 {
		return Header{}, 0, errReserved
	}
	h = getHeader(pkt)
	if err := checkHeader(&h); err != nil {
		return Header{}, 0, err
	}
	if h.Cluster != c.cluster {
		return Header{}, 0, ErrCluster
	}
	end = HeaderSize + int(h.Length)
	switch {
	case end+MACSize > len(pkt):
		return Header{}, 0, errBodyShort
	case end+MACSize < len(pkt):
		return Header{}, 0, errTrailing
	}
	return h, end, nil
}

// verify reports whether mac is the MAC of b under the Codec's key or one
// of the keys it accepts, comparing in constant time.
func (c *Codec) verify(b, mac []byte) bool {
	if subtle.ConstantTimeCompare(c.digest(b), mac) == 1 {
		return true
	}
	for _, m := range c.accept {
		m.Reset()
		m.Write(b)
		if subtle.ConstantTimeCompare(m.Sum(c.sum[:0])[:MACSize], mac) == 1 {
			return true
		}
	}
	return false
}
