// Package api is the protocol between fmagent and the clients on its node,
// spoken on a SOCK_STREAM unix socket (by default /run/fmagent/fmagent.sock),
// and the server side of it. docs/api.md is the reference: frame layout, op
// codes, every request and result in JSON, error codes.
//
// In short: every frame is a 16-byte big-endian header (magic "FMAP",
// version 1, op, flags, request ID, body length up to 64 KiB) and a JSON
// body. A client may send several requests without waiting; the server
// handles them concurrently and every reply frame carries the request's ID
// and op|0x80. A reply is a JSON result, or an error {code, message} with
// FlagError. A List reply may span several frames (FlagMore on all but the
// last); a Watch is acknowledged by a FlagMore frame and then streams Event
// frames (op OpEvent|OpReply) until the client closes the connection.
//
// Errors the client can act on are sentinels (ErrNotFound, ErrNoMaster, ...)
// compared by code, so errors.Is works on both sides of the socket. A bad
// body, an unknown op or version, a denied write: the connection survives.
// A bad magic or an oversize frame: the server replies and closes.
//
// The agent implements Handler and runs a Server on a listener from Listen.
// Package api/apitest has an in-memory Handler for tests.
package api
