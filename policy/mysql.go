package policy

import (
	"regexp"
	"slices"
)

// MySQLSpec rotates the password of a MariaDB (or MySQL) user in
// blue/green mode: two users <role>_blue and <role>_green at Host share
// the privileges of the role Role (see rotators/mysql).
type MySQLSpec struct {
	// AdminDSN is a go-sql-driver/mysql DSN
	// (user:password@tcp(host:3306)/) of an account that may ALTER USER
	// the pair (see deploy/mysql/grants.sql).
	AdminDSN Ref `yaml:"admin_dsn"`
	// Role is the role that holds the application's privileges; the
	// login users are <role>_blue and <role>_green.
	Role string `yaml:"role"`
	// Host is the host part of the two users (default "%").
	Host string `yaml:"host"`
	// FenceDatabase holds the rotator's fence table rotator_fence
	// (default "rotator").
	FenceDatabase string `yaml:"fence_database"`
	// TerminateSessions kills the old user's connections at retire.
	TerminateSessions bool         `yaml:"terminate_sessions"`
	Password          PasswordSpec `yaml:"password"`
	// Connection is published beside the credential: host, port,
	// database.
	Connection map[string]string `yaml:"connection"`
}

// Defaults of a mysql rotator.
const (
	DefaultMySQLHost          = "%"
	DefaultMySQLFenceDatabase = "rotator"
)

var (
	// MariaDB user names hold at most 80 characters (MySQL 32): the
	// role leaves room for _green within MySQL's 32.
	mysqlRoleRE  = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,25}$`)
	mysqlHostRE  = regexp.MustCompile(`^[A-Za-z0-9.%_:-]{1,60}$`)
	mysqlIdentRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
)

func (v *validator) mysqlRotator(path string, r RotatorSpec) {
	m := r.MySQL
	if m == nil {
		return
	}
	p := path + ".mysql"
	if m.AdminDSN.IsZero() {
		v.errf(p+".admin_dsn", "required: {env: NAME} or {file: PATH} holding a DSN (user:password@tcp(host:3306)/) of an account that may ALTER USER")
	}
	switch {
	case m.Role == "":
		v.errf(p+".role", "required: the role that holds the application's privileges, such as app")
	case !mysqlRoleRE.MatchString(m.Role):
		v.errf(p+".role", "expected lowercase letters, digits and _, not starting with a digit, at most 26 characters (so that %s_green fits in 32), got %q", m.Role, m.Role)
	}
	if m.Host != "" && !mysqlHostRE.MatchString(m.Host) {
		v.errf(p+".host", "expected a host pattern of letters, digits and . %% _ : - (such as %% or 10.0.%%), got %q", m.Host)
	}
	if m.FenceDatabase != "" && !mysqlIdentRE.MatchString(m.FenceDatabase) {
		v.errf(p+".fence_database", "expected a database name of letters, digits and _, got %q", m.FenceDatabase)
	}
	if v.has(p+".password.length") && (m.Password.Length < MinPasswordLength || m.Password.Length > MaxPasswordLength) {
		v.errf(p+".password.length", "must be between %d and %d, got %d", MinPasswordLength, MaxPasswordLength, m.Password.Length)
	}
	if a := m.Password.Alphabet; v.has(p+".password.alphabet") && !alphabetRE.MatchString(a) {
		v.errf(p+".password.alphabet", "may hold only characters safe in a connection URL without escaping (%s)", passwordAlphabetCharacters)
	}
	for _, k := range sortedKeys(m.Connection) {
		if slices.Contains(reservedConnectionKeys, k) {
			v.errf(p+".connection."+k, "%q is written by rotator itself; connection holds non-secret fields such as host, port, database", k)
		}
	}
}
