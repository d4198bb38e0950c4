package api

import "net"

// SetPeerCred replaces how s reads a connection's credentials (tests only).
func SetPeerCred(s *Server, f func(*net.UnixConn) (Cred, error)) { s.peerCred = f }

// ServeConn serves one connection until it ends (tests only).
func ServeConn(s *Server, nc net.Conn, cred Cred) { s.serveConn(nc, cred) }
