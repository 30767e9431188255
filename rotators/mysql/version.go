package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rotator/rotator/rotation"
)

// minMariaDB is the oldest MariaDB the rotator's SQL runs on: ACCOUNT
// LOCK/UNLOCK and its error 4151 came in 10.4.2, mysql.global_priv (read
// for account_locked and default_role) in 10.4.1.
var minMariaDB = version{10, 4, 2}

// version is a server's major.minor.patch.
type version [3]int

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

func (v version) less(w version) bool {
	for i := range v {
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

// versionProbe is the statement that asks the server what it is, sent
// once per admin pool before anything else. Its comment names it in the
// server's general log.
const versionProbe = "SELECT /* rotator: server version check */ VERSION(), @@version_comment"

// parseVersion reads the version a server reports (SELECT VERSION(), or
// the handshake's, which MariaDB prefixes with "5.5.5-"): whether it is
// MariaDB, and its major.minor.patch. MariaDB always names itself in the
// string ("10.11.6-MariaDB-0+deb12u1"); MySQL and its forks do not
// ("8.0.36", "8.0.36-28" Percona).
func parseVersion(s string) (mariaDB bool, v version, err error) {
	mariaDB = strings.Contains(strings.ToLower(s), "mariadb")
	rest := s
	if mariaDB {
		rest = strings.TrimPrefix(rest, "5.5.5-")
	}
	// The leading digits and dots: "10.11.6" of "10.11.6-MariaDB-log".
	end := strings.IndexFunc(rest, func(c rune) bool { return c != '.' && (c < '0' || c > '9') })
	if end >= 0 {
		rest = rest[:end]
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return mariaDB, v, fmt.Errorf("version %q does not start with major.minor[.patch]", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return mariaDB, v, fmt.Errorf("version %q does not start with major.minor[.patch]", s)
		}
		v[i] = n
	}
	return mariaDB, v, nil
}

// supported says why a server that reports versionString (VERSION()) and
// comment (@@version_comment) is not one the rotator's SQL runs on, or
// nil when it is a MariaDB 10.4.2 or later.
func supported(versionString, comment string) error {
	found := fmt.Sprintf("%q", versionString)
	if comment != "" {
		found += fmt.Sprintf(" (%q)", comment)
	}
	mariaDB, v, err := parseVersion(versionString)
	switch {
	case !mariaDB:
		return fmt.Errorf("it is not MariaDB: it reports version %s; the mysql rotator supports MariaDB %s or later only, "+
			"it uses MariaDB-only statements and tables (MySQL is not supported: see README, \"MariaDB: blue/green users\")", found, minMariaDB)
	case err != nil:
		return fmt.Errorf("it reports version %s, which does not read as MariaDB major.minor.patch; the mysql rotator supports MariaDB %s or later", found, minMariaDB)
	case v.less(minMariaDB):
		return fmt.Errorf("it runs MariaDB %s (version %s); the mysql rotator needs MariaDB %s or later (ACCOUNT LOCK, mysql.global_priv): upgrade the server", v, found, minMariaDB)
	}
	return nil
}

// checkServer asks the server behind the admin pool what it is, and
// refuses (permanent) a server the rotator's SQL does not run on, before
// any other statement reaches it. The message names the server by its
// address, never the DSN.
func (r *Rotator) checkServer(ctx context.Context, db *sql.DB) error {
	var ver string
	var comment sql.NullString
	if err := db.QueryRowContext(ctx, versionProbe).Scan(&ver, &comment); err != nil {
		return r.sqlError(fmt.Sprintf("mysql: ask the server at %s for its version", r.adminAddr), err)
	}
	return r.refuse(ver, comment.String)
}

// refuse is checkServer's verdict on what the server reported: nil, or a
// permanent error that names the server (its address and where the DSN
// comes from), what it reported and what is supported.
func (r *Rotator) refuse(ver, comment string) error {
	if err := supported(ver, comment); err != nil {
		return rotation.Permanent(fmt.Errorf("mysql: the server at %s (%s): %w", r.adminAddr, r.adminRef, err))
	}
	return nil
}

// errClosed is returned by a closed Rotator.
var errClosed = errors.New("mysql rotator is closed")
