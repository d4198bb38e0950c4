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
	if len(pkt) > MaxDatagram {
		return Header{}, nil, errPacketTooBig
	}
	if len(pkt) < Overhead {
		return Header{}, nil, errPacketShort
	}
	if binary.BigEndian.Uint16(pkt[offMagic:]) != Magic {
		return Header{}, nil, ErrMagic
	}
	if pkt[offVersion] != Version {
		return Header{}, nil, ErrVersion
	}
	if pkt[offReserved] != 0 {
		return Header{}, nil, errReserved
	}
	h = getHeader(pkt)
	if err := checkHeader(&h); err != nil {
		return Header{}, nil, err
	}
	if h.Cluster != c.cluster {
		return Header{}, nil, ErrCluster
	}
	end := HeaderSize + int(h.Length)
	switch {
	case end+MACSize > len(pkt):
		return Header{}, nil, errBodyShort
	case end+MACSize < len(pkt):
		return Header{}, nil, errTrailing
	}
	if subtle.ConstantTimeCompare(c.digest(pkt[:end]), pkt[end:]) != 1 {
		return Header{}, nil, ErrAuth
	}
	return h, pkt[HeaderSize:end:end], nil
}
