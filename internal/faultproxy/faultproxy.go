// Package faultproxy is a TCP proxy for fault tests that delays traffic
// the way a network can: it holds the bytes one connection sends (from the
// first chunk that matches a predicate) until released, or freezes every
// connection's client-to-server direction at once (a state database that
// stops answering). Held bytes are delivered in order on release, even when
// the client has given up and closed its side: that is the delayed packet
// of a process that lost its lease.
//
// Only the client-to-server direction is held; server replies always flow.
// What the server answers on a held connection after release is recorded
// (Reply), so a test can see the server refuse the late statement.
package faultproxy

import (
	"bytes"
	"errors"
	"net"
	"sync"
)

// Proxy forwards connections from Addr to a target address.
type Proxy struct {
	Addr string // host:port to connect to instead of the target

	to string
	ln net.Listener

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	match    func([]byte) bool
	heldCh   chan struct{} // closed when a chunk is held
	release  chan struct{} // closed by Release
	held     *conn
	frozen   bool
	thaw     chan struct{}
	closed   bool
	closeAll chan struct{}
}

type conn struct {
	held      bool
	reply     bytes.Buffer  // server bytes after release (held connections)
	replyDone chan struct{} // closed when the server side of a held connection ends
}

// New listens on 127.0.0.1 and forwards to to ("host:port").
func New(to string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), to: to, ln: ln, conns: map[net.Conn]struct{}{},
		heldCh: make(chan struct{}), release: make(chan struct{}), thaw: make(chan struct{}), closeAll: make(chan struct{})}
	close(p.thaw)
	go p.serve()
	return p, nil
}

// HoldWhen arms the proxy: the first chunk a client sends for which match
// returns true is held, with everything after it on that connection, until
// Release. Held is closed when that happens.
func (p *Proxy) HoldWhen(match func(chunk []byte) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match = match
}

// Held is closed once a chunk has been held.
func (p *Proxy) Held() <-chan struct{} { return p.heldCh }

// Release delivers the held bytes (in order) and lets the connection flow.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

// Reply waits for the server side of the held connection to end (after
// Release) or for done, and returns what the server sent after the held
// bytes were delivered.
func (p *Proxy) Reply(done <-chan struct{}) ([]byte, error) {
	select {
	case <-p.heldCh:
	case <-done:
		return nil, errors.New("nothing was held")
	}
	p.mu.Lock()
	c := p.held
	p.mu.Unlock()
	select {
	case <-c.replyDone:
	case <-done:
		return nil, errors.New("the server did not finish answering the held connection")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(c.reply.Bytes()), nil
}

// Freeze stops the client-to-server direction of every connection (new
// ones too) until Thaw: requests are not lost, they wait.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen, p.thaw = true, make(chan struct{})
	}
}

// Thaw lets frozen traffic flow again.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.closeAll)
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) pipe(client net.Conn) {
	server, err := net.Dial("tcp", p.to)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client, server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	c := &conn{replyDone: make(chan struct{})}
	go p.serverToClient(c, server, client)
	buf := make([]byte, 64<<10)
	for {
		n, rerr := client.Read(buf)
		if n > 0 {
			chunk := bytes.Clone(buf[:n])
			if !p.gate(c, chunk) {
				break
			}
			if _, err := server.Write(chunk); err != nil {
				break
			}
		}
		if rerr != nil {
			break
		}
	}
	// The client is gone (or the proxy closed): let the server finish what
	// it was sent, and see its end.
	if tc, ok := server.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = server.Close()
	}
}

// gate blocks a chunk while its connection is held or the proxy frozen; it
// reports false when the proxy closed meanwhile.
func (p *Proxy) gate(c *conn, chunk []byte) bool {
	p.mu.Lock()
	if !c.held && p.match != nil && p.match(chunk) {
		c.held, p.match, p.held = true, nil, c
		close(p.heldCh)
	}
	held, release, thaw := c.held, p.release, p.thaw
	p.mu.Unlock()
	if held {
		select {
		case <-release:
		case <-p.closeAll:
			return false
		}
	}
	select {
	case <-thaw:
	case <-p.closeAll:
		return false
	}
	return true
}

func (p *Proxy) serverToClient(c *conn, server, client net.Conn) {
	defer close(c.replyDone)
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if c.held {
				c.reply.Write(buf[:n])
			}
			p.mu.Unlock()
			_, _ = client.Write(buf[:n]) // the client may be gone; keep reading
		}
		if err != nil {
			_ = client.Close()
			_ = server.Close()
			return
		}
	}
}
