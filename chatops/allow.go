package chatops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"gopkg.in/yaml.v3"
)

// AllowList says who may change host states from chat, and under which
// name the change is recorded. The file is YAML:
//
//	teams: [T0123ABCD]                 # optional: serve only these Slack workspaces
//	users:
//	  - {id: U012AB3CD, name: alice}   # Slack user ID → recorded as "alice"
//	  - {id: U045EF6GH, team: T0123ABCD, name: bob}   # only from that workspace
//	readers: everyone                  # or "listed": status/diff only for users above
//
// A Slack request carries the workspace (team_id) and the user (user_id).
// With teams set, a request from any other workspace is refused, reads
// included (help excepted); a user entry with a team matches only requests
// from that workspace. Without either, the user ID alone decides, which is
// enough while the Slack app is installed in one workspace only: list the
// teams when it is installed in several, or in an Enterprise Grid.
type AllowList struct {
	// Teams, if not empty, are the only Slack workspace IDs served.
	Teams []string      `yaml:"teams"`
	Users []AllowedUser `yaml:"users"`
	// Readers is "everyone" (the default) or "listed".
	Readers string `yaml:"readers"`

	teams  map[string]bool
	byID   map[string]*AllowedUser
	byName map[string]*AllowedUser
}

// AllowedUser is one allow-listed chat user.
type AllowedUser struct {
	ID   string `yaml:"id"`   // Slack user ID, e.g. U012AB3CD
	Team string `yaml:"team"` // Slack workspace ID, e.g. T0123ABCD; empty: any served workspace
	Name string `yaml:"name"` // recorded as "by"
}

var (
	userID   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)
)

// ParseAllowList decodes and validates an allow-list.
func ParseAllowList(data []byte) (*AllowList, error) {
	var a AllowList
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("allow-list is empty: list the users who may change hosts under users:")
		}
		return nil, fmt.Errorf("allow-list: %w", err)
	}
	switch a.Readers {
	case "":
		a.Readers = "everyone"
	case "everyone", "listed":
	default:
		return nil, fmt.Errorf("allow-list: readers %q: use everyone or listed", a.Readers)
	}
	a.teams = map[string]bool{}
	for i, t := range a.Teams {
		if !userID.MatchString(t) {
			return nil, fmt.Errorf("allow-list: teams[%d]: %q: give the Slack workspace ID (team_id, e.g. T0123ABCD)", i, t)
		}
		if a.teams[t] {
			return nil, fmt.Errorf("allow-list: teams[%d]: %s is listed twice", i, t)
		}
		a.teams[t] = true
	}
	a.byID, a.byName = map[string]*AllowedUser{}, map[string]*AllowedUser{}
	for i := range a.Users {
		u := &a.Users[i]
		if !userID.MatchString(u.ID) {
			return nil, fmt.Errorf("allow-list: users[%d]: id %q: give the Slack user ID (Profile → ⋮ → Copy member ID)", i, u.ID)
		}
		if u.Team != "" && !userID.MatchString(u.Team) {
			return nil, fmt.Errorf("allow-list: users[%d] (%s): team %q: give the Slack workspace ID (team_id, e.g. T0123ABCD)", i, u.ID, u.Team)
		}
		if u.Team != "" && len(a.teams) > 0 && !a.teams[u.Team] {
			return nil, fmt.Errorf("allow-list: users[%d] (%s): team %s is not under teams:, so this entry could never match: add it there", i, u.ID, u.Team)
		}
		if !userName.MatchString(u.Name) {
			return nil, fmt.Errorf("allow-list: users[%d] (%s): name %q: give the name to record, letters, digits and ._@-", i, u.ID, u.Name)
		}
		if a.byID[u.ID] != nil {
			return nil, fmt.Errorf("allow-list: users[%d]: id %s is listed twice", i, u.ID)
		}
		if a.byName[u.Name] != nil {
			return nil, fmt.Errorf("allow-list: users[%d]: name %s is listed twice", i, u.Name)
		}
		a.byID[u.ID], a.byName[u.Name] = u, u
	}
	return &a, nil
}

// LoadAllowList reads an allow-list file.
func LoadAllowList(path string) (*AllowList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read allow-list: %w", err)
	}
	a, err := ParseAllowList(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// TeamAllowed reports whether requests from a Slack workspace are served:
// always when the list names no teams.
func (a *AllowList) TeamAllowed(team string) bool {
	return a == nil || len(a.teams) == 0 || a.teams[team]
}

// BySlack returns the user a Slack request from workspace team and user
// id is, or nil: the workspace must be served, and must be the entry's
// team if it names one.
func (a *AllowList) BySlack(team, id string) *AllowedUser {
	if a == nil || !a.TeamAllowed(team) {
		return nil
	}
	u := a.byID[id]
	if u == nil || u.Team != "" && u.Team != team {
		return nil
	}
	return u
}

// Lookup finds a user by ID or by name (the JSON endpoint accepts either;
// its bearer token vouches for the user, so teams play no part).
func (a *AllowList) Lookup(user string) *AllowedUser {
	if a == nil {
		return nil
	}
	if u := a.byID[user]; u != nil {
		return u
	}
	return a.byName[user]
}

// OpenReads reports whether users off the list may run status and diff.
func (a *AllowList) OpenReads() bool { return a == nil || a.Readers != "listed" }
