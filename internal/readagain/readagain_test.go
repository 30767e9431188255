package readagain_test

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/readagain"
)

func TestDo(t *testing.T) {
	cut := fmt.Errorf("deserialization failed: %w", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed})
	other := errors.New("access denied")
	for _, c := range []struct {
		name  string
		errs  []error
		calls int
		err   error
	}{
		{"ok", []error{nil}, 1, nil},
		{"cut once", []error{cut, nil}, 2, nil},
		{"cut twice", []error{cut, cut}, 2, net.ErrClosed},
		{"other error", []error{other}, 1, other},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			v, err := readagain.Do(func() (int, error) {
				err := c.errs[calls]
				calls++
				return calls, err
			})
			require.Equal(t, c.calls, calls)
			if c.err == nil {
				require.NoError(t, err)
				require.Equal(t, calls, v)
			} else {
				require.ErrorIs(t, err, c.err)
			}
		})
	}
}
