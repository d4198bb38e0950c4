package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// ContentType is the Prometheus text format's content type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves reg at any path (mount it at /metrics).
func Handler(reg *Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		if r.Method == http.MethodHead {
			return
		}
		reg.WriteText(w)
	})
}

// HealthHandler answers a liveness probe: 200 "ok" when healthy returns nil
// (or is nil), 503 and the error's text otherwise.
func HealthHandler(healthy func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if healthy != nil {
			if err := healthy(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
}

// Server is a running metrics endpoint.
type Server struct {
	ln      net.Listener
	srv     *http.Server
	err     chan error
	once    sync.Once
	closeEr error
}

// ErrNotLoopback: the endpoint has no authentication, so it listens on a
// loopback address only.
var ErrNotLoopback = errors.New("metrics: the listen address must be a loopback address (127.0.0.0/8, ::1 or localhost): the endpoint has no authentication")

// ServerOptions are NewServerWith's options.
type ServerOptions struct {
	// AllowRemote lets addr be any address (the operator asked for it
	// explicitly: metrics.allow_remote); otherwise it must be loopback.
	AllowRemote bool
	// Healthy answers GET /healthz: nil is 200 "ok", an error is 503 with
	// its text. Nil: /healthz always answers 200 while the process serves.
	Healthy func() error
}

// NewServer listens on addr, which must be a loopback host and a port
// (":9464" and "0.0.0.0:9464" are refused), and serves reg at /metrics.
func NewServer(addr string, reg *Registry) (*Server, error) {
	return NewServerWith(addr, reg, ServerOptions{})
}

// NewServerWith is NewServer with options: a non-loopback address when
// AllowRemote, and the health check served at /healthz.
func NewServerWith(addr string, reg *Registry, opt ServerOptions) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen address %q: %w", addr, err)
	}
	if host != "localhost" && !opt.AllowRemote {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Unmap().IsLoopback() {
			return nil, fmt.Errorf("%w; got %q", ErrNotLoopback, addr)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// localhost resolves to a loopback address; check what was bound anyway.
	if ta, ok := ln.Addr().(*net.TCPAddr); !opt.AllowRemote && (!ok || !ta.AddrPort().Addr().Unmap().IsLoopback()) {
		ln.Close()
		return nil, fmt.Errorf("%w; %q bound %v", ErrNotLoopback, addr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(reg))
	mux.Handle("/healthz", HealthHandler(opt.Healthy))
	s := &Server{
		ln:  ln,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		err: make(chan error, 1),
	}
	go func() { s.err <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, waiting up to a second for scrapes in flight.
// Closing twice is harmless.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if serr := <-s.err; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		s.closeEr = err
	})
	return s.closeEr
}

// Serve starts a metrics endpoint on addr (a loopback address) and returns
// the function that stops it.
func Serve(addr string, reg *Registry) (stop func(), err error) {
	s, err := NewServer(addr, reg)
	if err != nil {
		return nil, err
	}
	return func() { s.Close() }, nil
}
