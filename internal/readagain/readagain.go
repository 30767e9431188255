// Package readagain sends an idempotent read once more when Go's HTTP
// client closed the connection under the response it was reading.
//
// A kept-alive connection can be closed locally while a response body is
// still being read: the call fails with "use of closed network
// connection" after the server answered 200 (aws/aws-sdk-go-v2#1825).
// The AWS SDK does not retry that, since it cannot know whether a call is
// idempotent. A read is; writes must not go through here.
package readagain

import (
	"errors"
	"net"
)

// Do calls read, and once more when the first call failed on a closed
// connection.
func Do[T any](read func() (T, error)) (T, error) {
	v, err := read()
	if Closed(err) {
		return read()
	}
	return v, err
}

// Closed says whether err is a read cut by a locally closed connection.
func Closed(err error) bool {
	return err != nil && errors.Is(err, net.ErrClosed)
}
