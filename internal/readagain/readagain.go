// Package readagain sends an idempotent read once more when Go's HTTP
// client closed the connection under the response it was reading.
//
// A kept-alive connection can be closed locally while a response body is
// still being read: the call fails with "use of closed network
// connection" after the server answered 200 (aws/aws-sdk-go-v2#1825).
// The SDK's default retryer does send such a call again, a write too
// (rotators/awsiam keeps CreateAccessKey, which has no idempotency token,
// from it), but a client with another retryer or a single attempt does
// not. A read is idempotent whatever the retryer; writes must not go
// through here.
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
