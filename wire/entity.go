package wire

import "github.com/cespare/xxhash/v2"

// EntityID is the ID of the entity called name: xxhash64 (seed 0) of its
// bytes. It is part of the protocol and of the shared-memory layout (C
// readers compute it with the XXH64 in fmshm.h), and this is its one
// definition.
func EntityID(name string) uint64 { return xxhash.Sum64String(name) }

// EntityIDBytes is EntityID of a name still in a buffer.
func EntityIDBytes(name []byte) uint64 { return xxhash.Sum64(name) }
