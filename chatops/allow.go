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
//	users:
//	  - {id: U012AB3CD, name: alice}   # Slack user ID → recorded as "alice"
//	  - {id: U045EF6GH, name: bob}
//	readers: everyone                  # or "listed": status/diff only for users above
type AllowList struct {
	Users []AllowedUser `yaml:"users"`
	// Readers is "everyone" (the default) or "listed".
	Readers string `yaml:"readers"`

	byID   map[string]*AllowedUser
	byName map[string]*AllowedUser
}

// AllowedUser is one allow-listed chat user.
type AllowedUser struct {
	ID   string `yaml:"id"`   // Slack user ID, e.g. U012AB3CD
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
	a.byID, a.byName = map[string]*AllowedUser{}, map[string]*AllowedUser{}
	for i := range a.Users {
		u := &a.Users[i]
		if !userID.MatchString(u.ID) {
			return nil, fmt.Errorf("allow-list: users[%d]: id %q: give the Slack user ID (Profile → ⋮ → Copy member ID)", i, u.ID)
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

// ByID returns the user with a Slack ID, or nil.
func (a *AllowList) ByID(id string) *AllowedUser {
	if a == nil {
		return nil
	}
	return a.byID[id]
}

// Lookup finds a user by ID or by name (the JSON endpoint accepts either).
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
