package vaultdev

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of a server, for outages: while it is
// down, its port refuses connections and open ones are cut. It passes
// bytes through untouched, so it works for HTTP and HTTPS alike.
type Proxy struct {
	// Addr is the proxy's address with the target's scheme:
	// http(s)://127.0.0.1:PORT.
	Addr string

	t        testing.TB
	hostPort string // where the proxy listens
	target   string // host:port of the server

	mu    sync.Mutex
	ln    net.Listener // nil while down
	conns map[net.Conn]struct{}
}

// NewProxy starts a proxy in front of the server at addr (a URL such as
// http://127.0.0.1:8200) and stops it at cleanup.
func NewProxy(t testing.TB, addr string) *Proxy {
	t.Helper()
	scheme, target, ok := strings.Cut(addr, "://")
	if !ok {
		t.Fatalf("vaultdev: proxy: %q is not a URL", addr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("vaultdev: proxy: listen: %v", err)
	}
	p := &Proxy{t: t, hostPort: ln.Addr().String(), target: strings.TrimSuffix(target, "/"), conns: map[net.Conn]struct{}{}}
	p.Addr = scheme + "://" + p.hostPort
	p.mu.Lock()
	p.serveLocked(ln)
	p.mu.Unlock()
	t.Cleanup(func() { p.SetDown(true) })
	return p
}

// SetDown stops the proxy (open connections are closed, new ones refused
// at Addr) or, with false, serves at Addr again.
func (p *Proxy) SetDown(down bool) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if down {
		if p.ln != nil {
			_ = p.ln.Close()
			p.ln = nil
		}
		for c := range p.conns {
			_ = c.Close()
		}
		return
	}
	if p.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", p.hostPort)
	if err != nil {
		p.t.Fatalf("vaultdev: proxy: listen again at %s: %v", p.hostPort, err)
	}
	p.serveLocked(ln)
}

func (p *Proxy) serveLocked(ln net.Listener) {
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.conns, c)
		return true
	}
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) pipe(client net.Conn) {
	defer client.Close()
	if !p.track(client, true) {
		return
	}
	defer p.track(client, false)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server, true) {
		return
	}
	defer p.track(server, false)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			_ = dst.Close()
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(server, client)
	go cp(client, server)
	<-done
	<-done
}
