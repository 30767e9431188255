package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
)

func TestValueNeverPrints(t *testing.T) {
	t.Parallel()
	const plain = "hunter2-very-secret"
	v := secret.New(plain)
	s := struct {
		V secret.Value
		P *secret.Value
	}{v, &v}

	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		outputs[verb] = fmt.Sprintf(verb, v)
		outputs["struct "+verb] = fmt.Sprintf(verb, s)
	}
	outputs["println"] = fmt.Sprintln(v, &v)
	j, err := json.Marshal(s)
	require.NoError(t, err)
	outputs["json"] = string(j)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "value", v, "ptr", &v, "group", s)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "value", v)
	outputs["slog"] = buf.String()
	outputs["error"] = fmt.Errorf("wrap %v: %w", v, fmt.Errorf("%s", v)).Error()

	for name, out := range outputs {
		require.NotContains(t, out, plain, name)
		if !strings.Contains(out, "0x") { // %x on a pointer prints an address
			require.Contains(t, out, secret.Redacted, name)
		}
	}
	require.Equal(t, plain, v.Reveal())
}

func TestEqualAndFingerprint(t *testing.T) {
	t.Parallel()
	a, b := secret.New("abc"), secret.New("abc")
	require.True(t, a.Equal(b))
	require.False(t, a.Equal(secret.New("abd")))
	require.Len(t, a.Fingerprint(), 12)
	require.Equal(t, a.Fingerprint(), b.Fingerprint())
	require.NotEqual(t, a.Fingerprint(), secret.New("abd").Fingerprint())
	require.Empty(t, secret.Value{}.Fingerprint())
	require.True(t, secret.Value{}.IsZero())
}
