package files_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/storetest"
)

// The test binary doubles as the second process of
// TestFlockExcludesAnotherProcess: run with helperEnv set, it publishes
// one version through its own Store and stops, under the lock, between
// the fence's compare and the write until a line arrives on stdin.
const helperEnv = "ROTATOR_FILES_PUBLISHER"

func TestMain(m *testing.M) {
	if os.Getenv(stressEnv) != "" {
		os.Exit(stressProcess())
	}
	if os.Getenv(helperEnv) != "" {
		os.Exit(publisherProcess())
	}
	os.Exit(m.Run())
}

func publisherProcess() int {
	dir, path := os.Getenv(helperEnv+"_DIR"), os.Getenv(helperEnv+"_PATH")
	s, err := files.New(&policy.FilesSpec{Dir: dir}, "")
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	in := bufio.NewReader(os.Stdin)
	files.SetTestHooks(s, func() {
		fmt.Println("held")
		_, _ = in.ReadString('\n')
	}, nil)
	var b [16]byte
	_, _ = rand.Read(b[:])
	v := rotation.Version{Number: 2, RunID: os.Getenv(helperEnv + "_RUN_ID"), RotatedAt: time.Now().UTC(),
		Credential: rotation.Credential{Username: "app_green", Secret: secret.New(hex.EncodeToString(b[:]))}}
	err = s.Publish(context.Background(), rotation.PublishRequest{Path: path, Version: v,
		Expect: &rotation.Expect{RunID: os.Getenv(helperEnv + "_EXPECT")}})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("published")
	return 0
}

// TestFlockExcludesAnotherProcess: two processes publish to one file, each
// expecting v1 to be current. Process B (a real second process) has
// compared and holds the lock before its write; process A's publish waits
// for the lock (it does not read, compare or write meanwhile), then finds
// B's version instead of v1 and is refused. Without a lock shared between
// processes A would pass its compare too, and both would "win".
func TestFlockExcludesAnotherProcess(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, files.FormatJSON)
	const path = "db/postgres.json"
	v1 := storetest.Version(t, 1, storetest.RunID())
	require.NoError(t, s.Publish(t.Context(), rotation.PublishRequest{Path: path, Version: v1}))
	runB := storetest.RunID()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperEnv+"_DIR="+dir, helperEnv+"_PATH="+path,
		helperEnv+"_RUN_ID="+runB, helperEnv+"_EXPECT="+v1.RunID)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			require.True(t, ok, "process B ended before %s; stderr: %s", what, stderr.String())
			return l
		case <-time.After(time.Minute):
			t.Fatalf("process B did not say %s; stderr: %s", what, stderr.String())
		}
		return ""
	}
	require.Equal(t, "held", next("that it holds the lock"))

	// B holds the lock between its compare (v1 is current) and its write.
	busy := make(chan struct{})
	var once sync.Once
	files.SetTestHooks(s, nil, func() { once.Do(func() { close(busy) }) })
	v3 := storetest.Version(t, 3, storetest.RunID())
	doneA := make(chan error, 1)
	go func() {
		doneA <- s.Publish(t.Context(), rotation.PublishRequest{Path: path, Version: v3, Expect: &rotation.Expect{RunID: v1.RunID}})
	}()
	select {
	case <-busy:
	case err := <-doneA:
		t.Fatalf("A's publish ended (%v) while another process held the lock between its compare and its write", err)
	case <-time.After(time.Minute):
		t.Fatal("A's publish neither waited for the lock nor ended")
	}

	_, err = io.WriteString(stdin, "go\n")
	require.NoError(t, err)
	require.Equal(t, "published", next("that it published"))
	require.NoError(t, cmd.Wait())

	errA := <-doneA
	require.ErrorIs(t, errA, rotation.ErrStoreMoved, "A, waiting for the lock, then finds B's version")
	require.True(t, strings.Contains(errA.Error(), runB) && strings.Contains(errA.Error(), v1.RunID), "names both runs: %v", errA)
	d, err := s.Describe(t.Context(), rotation.DescribeRequest{Path: path})
	require.NoError(t, err)
	require.Equal(t, runB, d.Current.RunID, "B's version is current")
	require.Equal(t, v1.RunID, d.Previous.RunID, "v1 is previous")
}
