// Command pgcluster starts and stops a throwaway PostgreSQL cluster that
// checks passwords, for `make demo` and for trying rotator by hand.
//
//	eval "$(go run ./internal/pgtest/pgcluster start --dir .demo)"
//	go run ./internal/pgtest/pgcluster stop --dir .demo
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rotator/rotator/internal/pgtest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pgcluster start|stop --dir DIR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".demo", "directory for the cluster")
	_ = fs.Parse(os.Args[2:])
	abs, _ := filepath.Abs(*dir)
	switch os.Args[1] {
	case "start":
		c, err := pgtest.Start(pgtest.Options{Dir: abs})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Remember where it is for stop.
		_ = os.WriteFile(filepath.Join(abs, "current"), []byte(c.Dir), 0o600)
		fmt.Printf("export PGCLUSTER_DIR=%q\nexport PGCLUSTER_ADMIN_DSN=%q\n", c.Dir, c.DSN("postgres"))
	case "stop":
		b, err := os.ReadFile(filepath.Join(abs, "current"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "no cluster recorded in", abs)
			os.Exit(0)
		}
		c, err := pgtest.Attach(string(b))
		if err == nil {
			err = c.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		_ = os.Remove(filepath.Join(abs, "current"))
	default:
		fmt.Fprintln(os.Stderr, "usage: pgcluster start|stop --dir DIR")
		os.Exit(2)
	}
}
