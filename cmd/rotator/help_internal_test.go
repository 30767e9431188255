package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// Every command's --help has an example, as the README promises: the
// tree is walked, so a command added later without one fails here.
func TestEveryCommandHelpHasExample(t *testing.T) {
	t.Parallel()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk((&app{}).rootCmd(), nil)
	require.Greater(t, len(paths), 10)
	for _, p := range paths {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), append(append([]string(nil), p...), "--help"), &out, &errOut)
		name := strings.Join(append([]string{"rotator"}, p...), " ")
		require.Equal(t, 0, code, "%s --help: %s", name, errOut.String())
		_, ex, ok := strings.Cut(out.String(), "\nExamples:\n")
		ex, _, _ = strings.Cut(ex, "\n\n")
		require.True(t, ok && strings.Contains(ex, "rotator"), "%s --help has no example:\n%s", name, out.String())
	}
}
