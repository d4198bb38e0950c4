package wire

import "strconv"

// AppendNodeSet appends ids as people read a set of nodes, "{1,2,3}", to
// dst: the one spelling of the logs, the events and fmctl.
func AppendNodeSet(dst []byte, ids []NodeID) []byte {
	dst = append(dst, '{')
	for i, id := range ids {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendUint(dst, uint64(id), 10)
	}
	return append(dst, '}')
}

// NodeSet is AppendNodeSet as a string.
func NodeSet(ids []NodeID) string { return string(AppendNodeSet(nil, ids)) }
