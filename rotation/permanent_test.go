package rotation_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/rotation"
)

// One Permanent marker: what a store or rotator marks, the Notifier sees as
// permanent, and the other way round, through any wrapping.
func TestOnePermanentMarker(t *testing.T) {
	t.Parallel()
	base := errors.New("permission denied")
	require.True(t, notify.IsPermanent(fmt.Errorf("publish: %w", rotation.Permanent(base))))
	require.True(t, rotation.IsPermanent(fmt.Errorf("send: %w", notify.Permanent(base))))
	require.ErrorIs(t, rotation.Permanent(base), base)
	require.False(t, rotation.IsPermanent(base))
	require.NoError(t, rotation.Permanent(nil))
}
