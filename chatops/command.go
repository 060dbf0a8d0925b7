package chatops

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Command is a parsed chat command.
type Command struct {
	// Verb is status, drain, fill, activate, remove, diff or help.
	Verb string
	// Host is the address or name a change or preview is about.
	Host string
	// Reason is the rest of the text after the host.
	Reason string
	// Table limits status to one table.
	Table string
	// Preview is the change a diff previews (drain, fill, activate or
	// remove).
	Preview string
	// Force overrides the one-at-a-time rule; DryRun only previews.
	Force, DryRun bool
}

// Changes reports whether the command changes the state.
func (c Command) Changes() bool { return changeVerbs[c.Verb] && !c.DryRun }

var changeVerbs = map[string]bool{"drain": true, "fill": true, "activate": true, "remove": true}

// needsReason lists the changes that must say why.
var needsReason = map[string]bool{"drain": true, "remove": true}

var hostPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$`)

// Help is the answer to "/glb help".
const Help = `glb ChatOps commands:
  /glb status [TABLE]                 hosts per table: state, health, share of rows
  /glb drain HOST REASON…             stop new flows to HOST (open flows finish)
  /glb fill HOST [REASON…]            put HOST back into the rows (filling)
  /glb activate HOST [REASON…]        mark HOST fully active
  /glb remove HOST REASON…            take a drained HOST out of every row
  /glb diff drain|fill|activate|remove HOST
                                      preview a change: rows moved, second chance, lost
  /glb help                           this text
HOST is an address or a backend name. Add --dry-run to a change to preview
it, or --force to override the one-host-at-a-time rule (logged).
Changes need you on the allow-list; they are recorded with your name.`

// ParseCommand parses the text after the slash command.
func ParseCommand(text string) (Command, error) {
	words := strings.Fields(text)
	if len(words) == 0 {
		return Command{Verb: "help"}, nil
	}
	c := Command{Verb: strings.ToLower(words[0])}
	rest := words[1:]
	switch {
	case c.Verb == "help":
		return c, nil
	case c.Verb == "status":
		if len(rest) > 1 {
			return Command{}, errors.New("status takes at most a table name: /glb status [TABLE]")
		}
		if len(rest) == 1 {
			if !hostPattern.MatchString(rest[0]) {
				return Command{}, fmt.Errorf("%q is not a table name", rest[0])
			}
			c.Table = rest[0]
		}
		return c, nil
	case c.Verb == "diff":
		if len(rest) != 2 || !changeVerbs[strings.ToLower(rest[0])] {
			return Command{}, errors.New("diff previews one change: /glb diff drain|fill|activate|remove HOST")
		}
		c.Preview = strings.ToLower(rest[0])
		rest = rest[1:]
		if !hostPattern.MatchString(rest[0]) {
			return Command{}, fmt.Errorf("%q is not a host: give an address or a backend name", rest[0])
		}
		c.Host = rest[0]
		return c, nil
	case changeVerbs[c.Verb]:
		// Options may come before or right after the host; the rest is the
		// reason, word for word.
		for len(rest) > 0 {
			switch w := rest[0]; {
			case w == "--force":
				c.Force = true
			case w == "--dry-run":
				c.DryRun = true
			case c.Host == "" && !strings.HasPrefix(w, "-"):
				c.Host = w
			default:
				goto reason
			}
			rest = rest[1:]
		}
	reason:
		if c.Host == "" {
			return Command{}, fmt.Errorf("%s needs a HOST: /glb %s HOST REASON…", c.Verb, c.Verb)
		}
		if !hostPattern.MatchString(c.Host) {
			return Command{}, fmt.Errorf("%q is not a host: give an address or a backend name", c.Host)
		}
		c.Reason = strings.Join(rest, " ")
		if needsReason[c.Verb] && c.Reason == "" {
			return Command{}, fmt.Errorf("%s needs a reason: /glb %s %s REASON…", c.Verb, c.Verb, c.Host)
		}
		return c, nil
	}
	return Command{}, fmt.Errorf("unknown command %q: try /glb help", words[0])
}

// String renders the command as a user would type it, for logs.
func (c Command) String() string {
	parts := []string{c.Verb}
	if c.Preview != "" {
		parts = append(parts, c.Preview)
	}
	if c.Table != "" {
		parts = append(parts, c.Table)
	}
	if c.Host != "" {
		parts = append(parts, c.Host)
	}
	if c.Force {
		parts = append(parts, "--force")
	}
	if c.DryRun {
		parts = append(parts, "--dry-run")
	}
	if c.Reason != "" {
		parts = append(parts, c.Reason)
	}
	return strings.Join(parts, " ")
}
