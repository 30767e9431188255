package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// InitReport says what Init did, for people.
type InitReport struct {
	Role, Host string
	// Actions lists each step, taken or found already done.
	Actions []string
	// Notes tell the operator what happens next.
	Notes []string
}

// String renders the report over several lines.
func (r InitReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "blue/green pair of role %s (users at host '%s')", r.Role, r.Host)
	for _, a := range r.Actions {
		b.WriteString("\n  - " + a)
	}
	for _, n := range r.Notes {
		b.WriteString("\n  note: " + n)
	}
	return b.String()
}

// Init creates what the rotator needs, where it is missing: the fence
// database and table, the role, the users <role>_blue and <role>_green
// (locked, with a random password nobody keeps), the grant of the role to
// each and the role as each user's default role. Every step checks first
// or is idempotent, so running Init again changes nothing. The
// application's privileges are granted to the role, by hand.
func (r *Rotator) Init(ctx context.Context) (InitReport, error) {
	rep := InitReport{Role: r.role, Host: r.host}
	db, err := r.admin(ctx)
	if err != nil {
		return rep, err
	}
	do := func(action, stmt string) error {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return r.sqlError("init: "+action, err)
		}
		rep.Actions = append(rep.Actions, action)
		return nil
	}
	if err := do("fence database "+r.fenceDB+" is there", "CREATE DATABASE IF NOT EXISTS `"+r.fenceDB+"`"); err != nil {
		return rep, err
	}
	if err := do("fence table "+r.fenceTable()+" is there", r.createFenceTable()); err != nil {
		return rep, err
	}
	var roles int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.global_priv WHERE User = ? AND Host = ''", r.role).Scan(&roles); err != nil {
		return rep, r.sqlError("init: read role "+r.role, err)
	}
	if roles == 0 {
		if err := do("created role "+r.role, "CREATE ROLE "+quote(r.role)); err != nil {
			return rep, err
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("grant the application's privileges to role %s (GRANT SELECT, INSERT ... ON app.* TO %s)", r.role, quote(r.role)))
	} else {
		rep.Actions = append(rep.Actions, "role "+r.role+" already exists")
	}
	st, err := r.userStates(ctx, db)
	if err != nil {
		return rep, err
	}
	for _, u := range []string{r.blue(), r.green()} {
		if st[u].exists {
			rep.Actions = append(rep.Actions, "user "+r.account(u)+" already exists")
		} else {
			pw, err := generatePassword(r.rnd, r.length, r.alphabet)
			if err != nil {
				return rep, fmt.Errorf("init: %w", err)
			}
			if err := do("created user "+r.account(u)+" (locked)",
				"CREATE USER "+r.account(u)+" IDENTIFIED BY PASSWORD "+quote(NativeHash(pw))+" ACCOUNT LOCK"); err != nil {
				return rep, err
			}
		}
		var granted int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = ? AND Host = ? AND Role = ?", u, r.host, r.role).Scan(&granted); err != nil {
			return rep, r.sqlError("init: read the roles of "+u, err)
		}
		if granted > 0 {
			rep.Actions = append(rep.Actions, fmt.Sprintf("%s already has role %s", u, r.role))
		} else if err := do(fmt.Sprintf("granted role %s to %s", r.role, u), "GRANT "+quote(r.role)+" TO "+r.account(u)); err != nil {
			return rep, err
		}
		var def sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT JSON_VALUE(Priv, '$.default_role') FROM mysql.global_priv WHERE User = ? AND Host = ?", u, r.host).Scan(&def); err != nil {
			return rep, r.sqlError("init: read the default role of "+u, err)
		}
		stmt := "SET DEFAULT ROLE " + quote(r.role) + " FOR " + r.account(u)
		if def.String == r.role {
			rep.Actions = append(rep.Actions, fmt.Sprintf("default role of %s is already %s", u, r.role))
		} else if err := do(fmt.Sprintf("default role of %s is %s", u, r.role), stmt); err != nil {
			return rep, fmt.Errorf("%w; SET DEFAULT ROLE for another user needs UPDATE ON mysql.* (deploy/mysql/init-grants.sql), "+
				"or have an administrator run %s; and run init again", err, stmt)
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("the first rotation sets a password on %s, unlocks it and publishes it", r.blue()))
	r.logger.InfoContext(ctx, "initialized blue/green pair", "actions", len(rep.Actions))
	return rep, nil
}
