package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// InitReport says what Init did, for people.
type InitReport struct {
	// Role is the group role.
	Role string
	// Database is where objects were reassigned (REASSIGN OWNED works in
	// one database at a time).
	Database string
	// Actions lists each step, taken or found already done ("created role
	// app_blue", "app_green is already a member of app").
	Actions []string
	// Notes tell the operator what happens next.
	Notes []string
}

// String renders the report over several lines.
func (r InitReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "blue/green pair of role %s (database %s)", r.Role, r.Database)
	for _, a := range r.Actions {
		b.WriteString("\n  - " + a)
	}
	for _, n := range r.Notes {
		b.WriteString("\n  note: " + n)
	}
	return b.String()
}

// Init turns the existing role into a blue/green group: it creates
// <role>_blue and <role>_green (NOLOGIN) where missing, makes them
// inheriting members of the role, sets their session role to it (so what
// they create is owned by the group) and reassigns what they already own in
// the connected database to the group. Every step checks first, so running
// Init again does nothing new. The group keeps LOGIN and its password:
// clients keep working until the first rotation retires it.
func (r *Rotator) Init(ctx context.Context) (InitReport, error) {
	return r.InitWith(ctx, InitRequest{})
}

// InitRequest adjusts Init.
type InitRequest struct {
	// AdoptExisting takes a <role>_blue or <role>_green that exists
	// already as it is, even when it carries what the pair must not have
	// (see foreign); the report says what was found.
	AdoptExisting bool
}

// InitWith is Init with a request. Before changing anything, it looks at
// each member role that exists already: one that carries attributes
// (CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS) or memberships beyond
// the group, has members of its own, or can log in without having been
// set up as a member of the pair (so with a password rotator did not
// set) is refused, naming what was found, unless req.AdoptExisting.
func (r *Rotator) InitWith(ctx context.Context, req InitRequest) (InitReport, error) {
	rep := InitReport{Role: r.role}
	if r.mode != policy.ModeBlueGreen {
		return rep, rotation.Permanent(fmt.Errorf("init: role %q uses mode %s; init prepares the blue/green pair and single-role mode needs none", r.role, r.mode))
	}
	c, err := r.admin(ctx)
	if err != nil {
		return rep, err
	}
	defer c.Release()
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&rep.Database); err != nil {
		return rep, sqlError("init: read the current database", err)
	}
	st, err := roleStates(ctx, c, r.role, r.blue(), r.green())
	if err != nil {
		return rep, sqlError("init: read roles", err)
	}
	if !st[r.role].exists {
		return rep, rotation.Permanent(fmt.Errorf("init: role %q does not exist: init turns an existing role into a blue/green pair; "+
			"create it first (CREATE ROLE %s LOGIN PASSWORD '...', owner of the application's objects) or fix postgres.role", r.role, ident(r.role)))
	}
	if st[r.role].super {
		return rep, rotation.Permanent(fmt.Errorf("init: role %q is a superuser: the rotator does not manage superusers", r.role))
	}
	var refused []string
	for _, m := range []string{r.blue(), r.green()} {
		if !st[m].exists || st[m].super {
			continue
		}
		found, err := r.foreign(ctx, c, m)
		if err != nil {
			return rep, err
		}
		if len(found) == 0 {
			continue
		}
		what := fmt.Sprintf("%s exists already with %s", m, strings.Join(found, ", "))
		if req.AdoptExisting {
			rep.Notes = append(rep.Notes, "adopted as it is (--adopt-existing): "+what)
			r.logger.WarnContext(ctx, "adopting an existing role as it is", "member", m, "found", strings.Join(found, ", "))
			continue
		}
		refused = append(refused, what)
	}
	if len(refused) > 0 {
		return rep, rotation.Permanent(fmt.Errorf("init: %s; the pair's roles must be plain NOLOGIN members of %s, so nothing was changed: "+
			"fix them by hand (ALTER ROLE ... NOLOGIN NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; REVOKE the other roles), drop them, "+
			"or run init again with --adopt-existing to take them as they are",
			strings.Join(refused, "; "), r.role))
	}
	do := func(action, stmt string) error {
		if _, err := c.Exec(ctx, stmt); err != nil {
			return sqlError("init: "+action, err)
		}
		rep.Actions = append(rep.Actions, action)
		return nil
	}
	for _, m := range []string{r.blue(), r.green()} {
		switch s := st[m]; {
		case !s.exists:
			if err := do("created role "+m+" (NOLOGIN)", "CREATE ROLE "+ident(m)+" NOLOGIN INHERIT"); err != nil {
				return rep, err
			}
		case s.super:
			return rep, rotation.Permanent(fmt.Errorf("init: role %q is a superuser: rename or drop it; the pair must be ordinary roles", m))
		default:
			login := "NOLOGIN"
			if s.login {
				login = "LOGIN"
			}
			rep.Actions = append(rep.Actions, fmt.Sprintf("role %s already exists (%s)", m, login))
		}
		if err := r.initMember(ctx, c, m, &rep, do); err != nil {
			return rep, err
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("%s keeps LOGIN and its password until the first rotation retires it; "+
		"the first rotation sets a password on %s and publishes it", r.role, r.blue()))
	r.logger.InfoContext(ctx, "initialized blue/green pair", "actions", len(rep.Actions))
	return rep, nil
}

// initMember makes m an inheriting member of the group whose session role
// is the group, and gives the group what m owns in this database.
func (r *Rotator) initMember(ctx context.Context, c *pgxpool.Conn, m string, rep *InitReport, do func(action, stmt string) error) error {
	var member, inherit bool
	err := c.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM pg_auth_members a
				JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles u ON u.oid = a.member
				WHERE g.rolname = $1 AND u.rolname = $2),
			(SELECT rolinherit FROM pg_roles WHERE rolname = $2)`, r.role, m).Scan(&member, &inherit)
	if err != nil {
		return sqlError("init: read membership of "+m, err)
	}
	if !inherit {
		if err := do("set INHERIT on "+m, "ALTER ROLE "+ident(m)+" INHERIT"); err != nil {
			return err
		}
	}
	if member {
		rep.Actions = append(rep.Actions, fmt.Sprintf("%s is already a member of %s", m, r.role))
	} else if err := do(fmt.Sprintf("granted %s to %s", r.role, m), "GRANT "+ident(r.role)+" TO "+ident(m)); err != nil {
		return err
	}

	var set bool
	err = c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles u ON u.oid = s.setrole
			WHERE u.rolname = $1 AND s.setdatabase = 0 AND $2 = ANY (s.setconfig))`, m, "role="+r.role).Scan(&set)
	if err != nil {
		return sqlError("init: read settings of "+m, err)
	}
	if set {
		rep.Actions = append(rep.Actions, fmt.Sprintf("%s already sets role %s at login", m, r.role))
	} else if err := do(fmt.Sprintf("set role %s at login of %s (objects it creates belong to %s)", r.role, m, r.role),
		"ALTER ROLE "+ident(m)+" SET role TO "+literal(r.role)); err != nil {
		return err
	}

	var owned int
	err = c.QueryRow(ctx, `SELECT count(*) FROM pg_shdepend d
			JOIN pg_database db ON db.oid = d.dbid AND db.datname = current_database()
			WHERE d.deptype = 'o' AND d.refclassid = 'pg_authid'::regclass
			  AND d.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)`, m).Scan(&owned)
	if err != nil {
		return sqlError("init: read objects owned by "+m, err)
	}
	if owned == 0 {
		rep.Actions = append(rep.Actions, fmt.Sprintf("%s owns nothing in database %s", m, rep.Database))
		return nil
	}
	action := fmt.Sprintf("reassigned %d objects owned by %s in database %s to %s", owned, m, rep.Database, r.role)
	if _, err := c.Exec(ctx, "REASSIGN OWNED BY "+ident(m)+" TO "+ident(r.role)); err != nil {
		return sqlErrorHint("init: reassign objects owned by "+m, fmt.Sprintf(
			"REASSIGN OWNED needs membership in both roles: GRANT %s, %s TO the admin role (a CREATEROLE role may grant it to itself), then run init again",
			r.role, m), err)
	}
	rep.Actions = append(rep.Actions, action)
	return nil
}

// foreign lists what an existing member role m carries that the pair must
// not: attributes, memberships of roles other than the group, members of
// its own (the admin role aside: REASSIGN OWNED needs it to be one, and
// Postgres 16 makes a CREATEROLE creator one), and LOGIN on a role that was not set up as a member of the
// pair (a member of the group whose session role is the group), which
// can only be a password rotator did not set.
func (r *Rotator) foreign(ctx context.Context, c *pgxpool.Conn, m string) ([]string, error) {
	var login, createdb, createrole, replication, bypassrls, paired bool
	var memberOf, members []string
	err := c.QueryRow(ctx, `SELECT r.rolcanlogin, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,
			EXISTS (SELECT 1 FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid WHERE a.member = r.oid AND g.rolname = $2)
			  AND EXISTS (SELECT 1 FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0 AND $3 = ANY (s.setconfig)),
			ARRAY(SELECT g.rolname::text FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
				WHERE a.member = r.oid AND g.rolname <> $2 ORDER BY 1),
			ARRAY(SELECT u.rolname::text FROM pg_auth_members a JOIN pg_roles u ON u.oid = a.member
				WHERE a.roleid = r.oid AND u.rolname <> current_user ORDER BY 1)
		FROM pg_roles r WHERE r.rolname = $1`, m, r.role, "role="+r.role).
		Scan(&login, &createdb, &createrole, &replication, &bypassrls, &paired, &memberOf, &members)
	if err != nil {
		return nil, sqlError("init: read attributes of "+m, err)
	}
	var found []string
	if login && !paired {
		found = append(found, "LOGIN (it can log in with a password rotator did not set)")
	}
	for _, a := range []struct {
		on   bool
		name string
	}{{createdb, "CREATEDB"}, {createrole, "CREATEROLE"}, {replication, "REPLICATION"}, {bypassrls, "BYPASSRLS"}} {
		if a.on {
			found = append(found, a.name)
		}
	}
	if len(memberOf) > 0 {
		found = append(found, "membership of "+strings.Join(memberOf, ", "))
	}
	if len(members) > 0 {
		found = append(found, "members of its own ("+strings.Join(members, ", ")+")")
	}
	return found, nil
}
