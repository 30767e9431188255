package faultproxy_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/faultproxy"
)

// echo answers every line with "ok <line>".
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					_, _ = c.Write(append([]byte("ok "), l...))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestHoldDeliversAfterTheClientLeft: a held chunk reaches the server on
// Release although the client closed its side meanwhile, and the server's
// answer is recorded.
func TestHoldDeliversAfterTheClientLeft(t *testing.T) {
	p, err := faultproxy.New(echo(t))
	require.NoError(t, err)
	t.Cleanup(p.Close)
	c, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	r := bufio.NewReader(c)
	_, err = c.Write([]byte("first\n"))
	require.NoError(t, err)
	l, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ok first\n", l)

	p.HoldWhen(func(b []byte) bool { return bytes.Contains(b, []byte("late")) })
	_, err = c.Write([]byte("late\n"))
	require.NoError(t, err)
	<-p.Held()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = r.ReadString('\n')
	require.Error(t, err, "nothing reaches the server while held")
	require.NoError(t, c.Close())

	p.Release()
	done := make(chan struct{})
	time.AfterFunc(10*time.Second, func() { close(done) })
	reply, err := p.Reply(done)
	require.NoError(t, err)
	require.Equal(t, "ok late\n", string(reply))
}

// TestFreeze: frozen traffic waits, it is not lost.
func TestFreeze(t *testing.T) {
	p, err := faultproxy.New(echo(t))
	require.NoError(t, err)
	t.Cleanup(p.Close)
	c, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	defer c.Close()
	p.Freeze()
	_, err = c.Write([]byte("x\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = bufio.NewReader(c).ReadString('\n')
	require.Error(t, err)
	p.Thaw()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	b := make([]byte, 5)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	require.Equal(t, "ok x\n", string(b))
}
